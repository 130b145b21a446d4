"""merkit's own dual-branch 3D-CNN + GRU with channel attention, on frame sequences.

Not the ICIP 2024 network (that one, from its authors' code, is `icip24`): this is merkit's
lighter two-stream design from the same ingredients -- two shallow 3D-CNN branches, CBAM's
standard channel attention (CAM) on each, a GRU per branch, late fusion. Every choice is
merkit's, all in `C3DGRUConfig`:

- the branches see the grey frames and their temporal differences (frame t+1 - frame t), the
  usual appearance / motion pair of two-stream video networks;
- each branch: two conv3d (t x 3 x 3) -> BN -> ReLU units, the first with spatial stride 2,
  each followed by a 1 x 2 x 2 max-pool (time is never pooled), then CAM on the volume;
- per frame, the attended features are average-pooled to `pool_grid` x `pool_grid` (coarse
  position is kept: it tells brows from mouth corners) and fed to one GRU per branch;
- late fusion: the two GRUs' last hidden states are concatenated -> dropout -> linear head.

Defaults are CPU-sized (8 frames of 64x64); the model accepts any frame count >= 2 and any size.

Input layout (see `merkit.models.layers`): (B, T * C, H, W), frame-major, C = `frame_channels`
(1 grey, 3 RGB) -- a prepared "sequence" array (N, T, C, H, W) reshaped to (N, T * C, H, W).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from merkit.models.layers import ChannelAttention3d, frames_in, unstack_frames
from merkit.models.registry import InputSpec, Preset, register_model


@dataclass
class C3DGRUConfig:
    """Shape of the network (per branch)."""

    frame_channels: int = 1  # C of the (B, T * C, H, W) layout
    widths: tuple[int, int] = (8, 16)  # the two conv3d units
    temporal_kernel: int = 3
    reduction: int = 4  # channel-attention MLP reduction
    pool_grid: int = 4  # spatial cells per frame fed to the GRU
    hidden: int = 64  # GRU state
    dropout: float = 0.3  # before the head


def _unit3d(in_chans: int, out_chans: int, kt: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(
            in_chans, out_chans, (kt, 3, 3), (1, stride, stride), (kt // 2, 1, 1), bias=False
        ),
        nn.BatchNorm3d(out_chans),
        nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 2, 2)),
    )


class Branch(nn.Module):
    """Shallow 3D CNN -> CAM -> per-frame pooled cells -> GRU; returns the last hidden state."""

    def __init__(self, in_chans: int, cfg: C3DGRUConfig) -> None:
        super().__init__()
        w1, w2 = cfg.widths
        self.cnn = nn.Sequential(
            _unit3d(in_chans, w1, cfg.temporal_kernel, 2),
            _unit3d(w1, w2, cfg.temporal_kernel, 1),
        )
        self.attention = ChannelAttention3d(w2, cfg.reduction)
        self.grid = cfg.pool_grid
        self.gru = nn.GRU(w2 * cfg.pool_grid**2, cfg.hidden, batch_first=True)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, hidden)."""
        volume = self.attention(self.cnn(clip))  # (B, w2, T, h, w)
        b, c, t = volume.shape[:3]  # pool each frame's map (2-D: exportable to ONNX)
        cells = F.adaptive_avg_pool2d(volume.flatten(1, 2), self.grid).view(
            b, c, t, *[self.grid] * 2
        )
        steps = cells.permute(0, 2, 1, 3, 4).flatten(2)  # (B, T, w2 * grid^2)
        _, last = self.gru(steps)
        return last[-1]


class C3DGRU(nn.Module):
    """Frames branch + differences branch, each 3D-CNN + CAM + GRU, fused late."""

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 8,
        config: C3DGRUConfig | None = None,
        **overrides: object,
    ) -> None:
        super().__init__()
        cfg = C3DGRUConfig(**{**asdict(config or C3DGRUConfig()), **overrides})
        self.config = cfg
        self.frames = frames_in(in_chans, cfg.frame_channels, "c3dgru", minimum=2)
        self.appearance = Branch(cfg.frame_channels, cfg)
        self.motion = Branch(cfg.frame_channels, cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.hidden, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2 * hidden): both branches' last GRU states."""
        clip = unstack_frames(x, self.config.frame_channels).transpose(1, 2)  # (B, C, T, H, W)
        diffs = clip[:, :, 1:] - clip[:, :, :-1]
        return torch.cat([self.appearance(clip), self.motion(diffs)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.forward_features(x)))


# merkit's: a short fixed schedule measured on the synthetic LOSO benchmark; the flow-aware flip
# is only right for flow maps, so the sequence model trains without it.
PRESETS = {
    "default": Preset(
        recipe={
            "epochs": 15,
            "batch_size": 16,
            "optimizer": "adamw",
            "lr": 3e-3,
            "weight_decay": 0.05,
            "schedule": "cosine",
            "augment": {"hflip": False, "max_shift": 2},
        }
    )
}


@register_model(
    "c3dgru",
    summary="merkit's dual-branch 3-D CNN (frames + differences), channel attention and GRUs",
    input=InputSpec("sequence", 1, (64, 64), frames=8),
    presets=PRESETS,
)
def c3dgru(num_classes: int = 3, in_chans: int = 8, **kwargs: object) -> C3DGRU:
    """C3DGRU of `C3DGRUConfig` (keyword overrides)."""
    return C3DGRU(num_classes, in_chans, **kwargs)
