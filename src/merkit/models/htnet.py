"""HTNet (Wang et al. 2024): a hierarchical transformer on a landmark-placed mosaic of a flow map.

Faithful to the authors' code (SEED_SYSTEMS.md §3, `Model.py`, `main_HTNet.py:222-231`):

- input: the 28x28 mosaic of four 14x14 patches of the u/v/strain map around facial points
  (`merkit.preprocess.regions`, layout "htnet"), prepared by the runner as the "regions" kind;
- patch embedding: non-overlapping 7x7 patches, each flattened in (row, column, channel) order
  to 147 values, then a 1x1 convolution to `dim` channels: a (dim, 4, 4) map;
- three levels, finest first: the map is cut into blocks of one position each (16, then 4,
  then 1), and each block runs through a pre-norm transformer of `depths` = (2, 2, 10) layers at
  widths dim, 2 dim, 4 dim with heads 3, 6, 12 and dim_head = width // heads (85); between
  levels an Aggregate (3x3 convolution to twice the width -> channel LayerNorm -> max-pool 3,
  stride 2, padding 1) halves the map;
- a transformer adds one learned scalar per block position (N(0, 1)), then per layer
  x += Attention(LN x) (1x1 qkv convolution without bias, softmax of q k^T / sqrt(dim_head),
  1x1 output convolution) and x += FeedForward(LN x) (1x1 C -> 4C, GELU, 1x1 4C -> C);
  LN normalises each pixel over its channels (biased variance, eps 1e-5, gain and bias (1,C,1,1));
- head: LN -> mean over positions -> Linear. Each block holds one position, so attention reduces
  to its value and output projections (inferred in the sheet; computed in full here, so other
  image and patch sizes give blocks of several positions).

The authors write the transformer's projections as 1x1 convolutions over a map and its norm by
hand; a 1x1 convolution is a linear map of each position's channels, so here they are
`nn.Linear` and `nn.LayerNorm` over the positions' channel vectors (the same functions, about
twice as fast on CPU; a convolution's weight (out, in, 1, 1) is the linear weight (out, in)).

Input convention. The authors' tensors are the PNG as OpenCV reads it -- channels (strain, v, u),
values 0..255, not normalised. merkit prepares every model's maps as (u, v, strain) in 0..1; the
model multiplies its input by `input_scale` (255: the authors' value range, which sets the
patch embedding's output against the N(0, 1) positional scalars) and keeps merkit's channel
order, a fixed permutation that an embedding trained from scratch absorbs (weights trained by
the authors would need their embedding's input channels reversed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from merkit.models.registry import InputSpec, Preset, register_model


@dataclass
class HTNetConfig:
    """Shape of the network; the defaults are the authors' (about 140 M parameters)."""

    image_size: int = 28
    patch: int = 7
    dim: int = 256  # width of the finest level; each coarser level doubles it
    heads: int = 3  # heads of the finest level; each coarser level doubles them
    depths: tuple[int, ...] = (2, 2, 10)  # transformer layers per level, finest first
    mlp_mult: int = 4
    dropout: float = 0.0
    input_scale: float = 255.0  # merkit's 0..1 maps -> the authors' 0..255


class ChannelNorm(nn.LayerNorm):
    """LayerNorm of each pixel of a (B, C, H, W) map over its channels (biased variance, a gain
    and a bias per channel): the authors' per-pixel norm, computed by torch's fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Attention(nn.Module):
    """Multi-head self-attention over the tokens (N, L, C) of a block."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim // heads
        inner = self.dim_head * heads
        self.scale = self.dim_head**-0.5
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        # (N, L, 3 * heads * dim_head) -> three (N, heads, L, dim_head)
        qkv = self.qkv(x).view(n, length, 3, self.heads, self.dim_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        weights = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        mixed = (weights @ v).transpose(1, 2).reshape(n, length, self.heads * self.dim_head)
        return self.out(mixed)


class FeedForward(nn.Sequential):
    """Linear to `mult` times the width -> GELU -> linear back."""

    def __init__(self, dim: int, mult: int, dropout: float = 0.0) -> None:
        super().__init__(
            nn.Linear(dim, dim * mult),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
            nn.Dropout(dropout),
        )


class TransformerLayer(nn.Module):
    """Pre-norm residual attention, then pre-norm residual feed-forward."""

    def __init__(self, dim: int, heads: int, mlp_mult: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, mlp_mult, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.ff(self.ff_norm(x))


class Transformer(nn.Module):
    """On each block of a map: a learned scalar added at each position, then `depth` layers."""

    def __init__(
        self, dim: int, seq_len: int, depth: int, heads: int, mlp_mult: int, dropout: float
    ) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.randn(seq_len))
        self.layers = nn.Sequential(
            *(TransformerLayer(dim, heads, mlp_mult, dropout) for _ in range(depth))
        )

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) blocks -> the same shape, each block's positions one token sequence."""
        n, c, h, w = blocks.shape
        tokens = blocks.flatten(2).transpose(1, 2) + self.position[: h * w].view(1, h * w, 1)
        return self.layers(tokens).transpose(1, 2).reshape(n, c, h, w)


def aggregate(dim_in: int, dim_out: int) -> nn.Sequential:
    """Between levels: 3x3 convolution -> channel LayerNorm -> max-pool halving the map."""
    return nn.Sequential(
        nn.Conv2d(dim_in, dim_out, 3, padding=1),
        ChannelNorm(dim_out),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


def to_blocks(x: torch.Tensor, per_side: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * per_side^2, C, H / per_side, W / per_side): each block a sample."""
    b, c, h, w = x.shape
    s = per_side
    blocks = x.view(b, c, s, h // s, s, w // s).permute(0, 2, 4, 1, 3, 5)
    return blocks.reshape(b * s * s, c, h // s, w // s)


def from_blocks(x: torch.Tensor, per_side: int) -> torch.Tensor:
    """The inverse of `to_blocks`."""
    n, c, h, w = x.shape
    s = per_side
    grid = x.view(n // (s * s), s, s, c, h, w).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(n // (s * s), c, s * h, s * w)


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches flattened in (row, column, channel) order -> 1x1 conv."""

    def __init__(self, in_chans: int, patch: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(patch * patch * in_chans, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch
        patches = x.view(b, c, h // p, p, w // p, p).permute(0, 3, 5, 1, 2, 4)
        return self.proj(patches.reshape(b, p * p * c, h // p, w // p))


class HTNet(nn.Module):
    """Patch embedding -> finest-to-coarsest levels of block-local transformers joined by
    aggregation -> channel LayerNorm -> mean over positions -> linear head."""

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 3,
        config: HTNetConfig | None = None,
        **overrides: object,
    ) -> None:
        super().__init__()
        cfg = HTNetConfig(**{**asdict(config or HTNetConfig()), **overrides})
        cfg.depths = tuple(cfg.depths)
        levels = len(cfg.depths)
        fmap = cfg.image_size // cfg.patch
        if cfg.image_size % cfg.patch or fmap % 2 ** (levels - 1):
            raise ValueError(
                f"image_size {cfg.image_size} must be a multiple of patch {cfg.patch}, and the "
                f"{fmap}x{fmap} patch map divisible by {2 ** (levels - 1)} for {levels} levels"
            )
        self.config = cfg
        seq_len = (fmap // 2 ** (levels - 1)) ** 2  # positions per block, the same at each level
        widths = [cfg.dim * 2**i for i in range(levels)]
        self.embed = PatchEmbed(in_chans, cfg.patch, cfg.dim)
        self.levels = nn.ModuleList(
            Transformer(width, seq_len, depth, cfg.heads * 2**i, cfg.mlp_mult, cfg.dropout)
            for i, (width, depth) in enumerate(zip(widths, cfg.depths, strict=True))
        )
        self.aggregates = nn.ModuleList(
            aggregate(widths[i], widths[i + 1]) for i in range(levels - 1)
        )
        self.norm = ChannelNorm(widths[-1])
        self.head = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The coarsest level's normalised map (B, 4 dim, 1, 1 at the authors' sizes)."""
        x = self.embed(x * self.config.input_scale)
        last = len(self.levels) - 1
        for i, transformer in enumerate(self.levels):
            per_side = 2 ** (last - i)
            x = from_blocks(transformer(to_blocks(x, per_side)), per_side)
            if i < last:
                x = self.aggregates[i](x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=(2, 3)))


PRESETS = {
    # merkit's: HTNet at an eighth of the authors' width (dim 32: 2.2 M parameters against
    # 140 M), their depth, heads and optimiser, so that a LOSO fits a CPU.
    "default": Preset(
        recipe={
            "model_kwargs": {"dim": 32},
            "epochs": 40,
            "batch_size": 64,
            "optimizer": "adam",
            "lr": 5e-4,
            "weight_decay": 0.0,
            "schedule": "constant",
            "augment": {"hflip": False, "max_shift": 0},
        }
    ),
    # main_HTNet.py:161-301: the authors' network (HTNetConfig's defaults), unweighted CE, Adam
    # lr 5e-5, batch 256 from an unshuffled loader, 800 epochs, no augmentation. (Their last
    # batch of an epoch is the remainder; merkit's engine keeps one batch size, so it is filled
    # up with the first samples of the order.) About 0.26 s per sample and step on one CPU
    # core, some 45 core-days for one LOSO: a GPU schedule.
    "paper": Preset(
        recipe={
            "model_kwargs": {},
            "epochs": 800,
            "batch_size": 256,
            "optimizer": "adam",
            "lr": 5e-5,
            "weight_decay": 0.0,
            "schedule": "constant",
            "shuffle": False,
            "augment": {"hflip": False, "max_shift": 0},
        }
    ),
}


@register_model(
    "htnet",
    summary="HTNet: hierarchical transformer on eye and mouth regions of the u/v/strain map "
    "(authors' code)",
    input=InputSpec("regions", 3, (28, 28)),
    presets=PRESETS,
)
def htnet(num_classes: int = 3, in_chans: int = 3, **kwargs: object) -> HTNet:
    """HTNet of `HTNetConfig` (keyword overrides)."""
    return HTNet(num_classes, in_chans, **kwargs)
