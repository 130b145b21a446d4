"""MOL (Shao et al., TPAMI 2025): F5C blocks on raw clips, trained jointly with flow and landmarks.

The paper's outline: F5C blocks -- a transformer-style fully-connected convolution (local
features with a global receptive field) followed by a graph-style channel-correspondence
convolution (channels as graph nodes) -- extract features straight from raw frames, with no key
frame; an optical-flow head and a facial-landmark head share those features with the classifier
and are trained jointly. Choices where it is open, all in `MOLConfig`:

- the clip is processed as T-1 frame pairs, one shared network per pair; a pair enters as
  [reference, frame t - reference] (motion made explicit), each channel normalised by an input
  BatchNorm (a difference is ~100x smaller than a frame). `reference="previous"` (default, the
  paper's consecutive pairs) or `"onset"` (every frame against the first, so sub-pixel steps
  add up; synthetic LOSO, 40 epochs: UF1 0.60 previous vs 0.56 onset, within seed noise);
- stem: `stem_strides` stride-2 conv-BN-GELU units, then average pooling to `grid` x `grid`;
- FCC (fully-connected convolution), pre-norm and residual like a transformer layer:
  x + proj(concat[depthwise k x k conv, FC along H, FC along W]) (the sparse-MLP token mixer),
  then x + MLP of 1x1 convs;
- CCC (channel-correspondence convolution): each channel is a node described by its spatial
  map; the graph links every channel to its `neighbours` most cosine-similar channels
  (softmax-weighted), and an EdgeConv-style 1x1 conv on concat[x, aggregated neighbours] is
  added back (residual);
- heads on each pair's features: flow (2 channels, the pair's flow -- with the onset reference
  the running sum of the consecutive flows preparation computed, a first-order composition
  that is exact for the near-rigid sub-pixel steps of a micro-expression --, area-downsampled
  to the grid, in pixels of the input frames; end-point-error loss) and landmarks (the later frame's
  68-point heatmap, area-downsampled; mean squared error);
- classifier: per pair the features average-pooled to `cells` x `cells` (coarse position
  tells brows from mouth corners), then mean and max over pairs -> dropout -> linear (the max
  keeps a brief micro-expression from being averaged away).

`aux_loss()` returns flow_weight * EPE + landmark_weight * MSE of the last training forward;
`head_losses` keeps both (detached) for logging.

Input: the "packed targets" layout of `merkit.preprocess.targets` -- per frame the channels
(gray, u, v, landmarks), flattened frame-major to (B, T * 4, H, W). Only gray is an input; the
others are targets, read only while training (they may be zero at inference).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from merkit.models.layers import conv_bn_act, frames_in, unstack_frames
from merkit.models.registry import InputSpec, register_model
from merkit.preprocess.targets import PACKED_CHANNELS


@dataclass
class MOLConfig:
    """Shape of the network and weights of the auxiliary losses."""

    dim: int = 32
    stem_strides: int = 3  # 64x64 frames -> 8x8 features
    grid: int = 8  # features pooled to grid x grid (the FC mixers' length)
    depth: int = 2  # F5C blocks
    kernel: int = 3  # FCC's local depthwise kernel
    mlp_ratio: float = 2.0
    neighbours: int = 8  # CCC: graph neighbours per channel
    cells: int = 3  # classifier: features average-pooled to cells x cells per pair
    dropout: float = 0.2
    reference: str = "previous"  # "previous" | "onset": what each frame's difference is taken from
    flow_weight: float = 1.0
    landmark_weight: float = 1.0


class FullyConnectedConv(nn.Module):
    """FCC: transformer-style block whose token mixer is local conv + FC along rows and columns."""

    def __init__(self, dim: int, grid: int, kernel: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.norm2 = nn.BatchNorm2d(dim), nn.BatchNorm2d(dim)
        self.local = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.fc_h = nn.Linear(grid, grid)  # mixes along H, shared by channels and columns
        self.fc_w = nn.Linear(grid, grid)  # mixes along W
        self.proj = nn.Conv2d(3 * dim, dim, 1)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        rows = self.fc_h(y.transpose(-1, -2)).transpose(-1, -2)
        cols = self.fc_w(y)
        x = x + self.proj(torch.cat([self.local(y), rows, cols], dim=1))
        return x + self.mlp(self.norm2(x))


class ChannelCorrespondenceConv(nn.Module):
    """CCC: graph convolution with channels as nodes and a k-nearest-neighbour similarity graph."""

    def __init__(self, dim: int, neighbours: int) -> None:
        super().__init__()
        self.k = min(neighbours, dim)
        self.update = nn.Sequential(nn.Conv2d(2 * dim, dim, 1, bias=False), nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = x.flatten(2)  # (B, C, H*W)
        unit = F.normalize(nodes, dim=-1)
        similarity = unit @ unit.transpose(1, 2)  # (B, C, C) cosine
        kth = similarity.topk(self.k, dim=-1).values[..., -1:]
        adjacency = similarity.masked_fill(similarity < kth, float("-inf")).softmax(-1)
        neighbours = (adjacency @ nodes).view_as(x)
        return x + self.update(torch.cat([x, neighbours], dim=1))


class F5C(nn.Sequential):
    """FCC (local-global features) -> CCC (correlations among feature patterns)."""

    def __init__(self, cfg: MOLConfig) -> None:
        super().__init__(
            FullyConnectedConv(cfg.dim, cfg.grid, cfg.kernel, cfg.mlp_ratio),
            ChannelCorrespondenceConv(cfg.dim, cfg.neighbours),
        )


def _head(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_act(dim, dim), nn.Conv2d(dim, out, 1))


def end_point_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance between (N, 2, H, W) flow fields."""
    return (pred - target).pow(2).sum(1).add(1e-8).sqrt().mean()


class MOL(nn.Module):
    """Pairwise F5C features -> flow head, landmark head and (pooled over pairs) classifier."""

    channels = len(PACKED_CHANNELS)

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 32,
        config: MOLConfig | None = None,
        **overrides: object,
    ) -> None:
        super().__init__()
        cfg = MOLConfig(**{**asdict(config or MOLConfig()), **overrides})
        if cfg.reference not in ("onset", "previous"):
            raise ValueError(f"mol: reference must be 'onset' or 'previous', not {cfg.reference!r}")
        self.config = cfg
        self.frames = frames_in(in_chans, self.channels, "mol", minimum=2)
        units: list[nn.Module] = [nn.BatchNorm2d(2)]  # frame and difference differ ~100x in scale
        chans = 2
        for i in range(cfg.stem_strides):
            width = cfg.dim if i == cfg.stem_strides - 1 else cfg.dim // 2
            units.append(conv_bn_act(chans, width, stride=2))
            chans = width
        if chans != cfg.dim:
            units.append(conv_bn_act(chans, cfg.dim, kernel=1))
        self.stem = nn.Sequential(*units)
        self.blocks = nn.Sequential(*(F5C(cfg) for _ in range(cfg.depth)))
        self.flow_head = _head(cfg.dim, 2)
        self.landmark_head = _head(cfg.dim, 1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.dim * cfg.cells**2, num_classes)
        self._aux: torch.Tensor | None = None
        self.head_losses: dict[str, torch.Tensor] = {}

    def pair_features(self, gray: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W) frames -> (B * (T-1), dim, grid, grid) features of the frame pairs."""
        nxt = gray[:, 1:]
        ref = gray[:, :1].expand_as(nxt) if self.config.reference == "onset" else gray[:, :-1]
        pairs = torch.stack([ref, nxt - ref], dim=2).flatten(0, 1)  # (B*(T-1), 2, H, W)
        features = self.stem(pairs)
        if features.shape[-2:] != (self.config.grid, self.config.grid):
            features = F.adaptive_avg_pool2d(features, self.config.grid)
        return self.blocks(features)

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits (B, K), flow (B, T-1, 2, g, g) in input pixels, landmark maps (B, T-1, g, g)."""
        gray = unstack_frames(x, self.channels)[:, :, 0]
        b, t = gray.shape[:2]
        features = self.pair_features(gray)
        flow = self.flow_head(features).view(b, t - 1, 2, *features.shape[-2:])
        marks = self.landmark_head(features).view(b, t - 1, *features.shape[-2:])
        return self._classify(features, b, t), flow, marks

    def _classify(self, features: torch.Tensor, b: int, t: int) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(features, self.config.cells).view(b, t - 1, -1)
        summary = torch.cat([pooled.mean(1), pooled.amax(1)], dim=1)
        return self.head(self.dropout(summary))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            gray = unstack_frames(x, self.channels)[:, :, 0]
            return self._classify(self.pair_features(gray), gray.shape[0], gray.shape[1])
        logits, flow, marks = self.forward_heads(x)
        flow_target, mark_target = self._targets(x, flow.shape[-2:])
        losses = {
            "flow": end_point_error(flow.flatten(0, 1), flow_target.flatten(0, 1)),
            "landmarks": F.mse_loss(marks, mark_target),
        }
        self.head_losses = {k: v.detach() for k, v in losses.items()}
        cfg = self.config
        self._aux = cfg.flow_weight * losses["flow"] + cfg.landmark_weight * losses["landmarks"]
        return logits

    def _targets(self, x: torch.Tensor, grid: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """The packed flow and landmark targets of frames 1..T-1, area-downsampled to `grid`
        (flow summed from the onset when the pairs are onset-referenced)."""
        packed = unstack_frames(x, self.channels)[:, 1:]  # (B, T-1, 4, H, W)
        b, t = packed.shape[:2]
        small = F.adaptive_avg_pool2d(packed[:, :, 1:].flatten(0, 1), grid)
        flow = small[:, :2].view(b, t, 2, *grid)
        if self.config.reference == "onset":
            flow = flow.cumsum(dim=1)
        return flow, small[:, 2].view(b, t, *grid)

    def aux_loss(self) -> torch.Tensor | None:
        """Weighted flow + landmark loss of the last training forward (returned once), else None."""
        aux, self._aux = self._aux, None
        return aux


@register_model("mol", input_spec=InputSpec("sequence", len(PACKED_CHANNELS), (64, 64), frames=8))
def mol(num_classes: int = 3, in_chans: int = 32, **kwargs: object) -> MOL:
    """MOL: F5C blocks on raw frame pairs, joint flow + landmark heads (targets packed in x)."""
    return MOL(num_classes, in_chans, **kwargs)
