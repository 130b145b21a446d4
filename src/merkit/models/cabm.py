"""CABM-FMER: a ConvMixer with convolutional attention (IEEE Access 2025).

The source (an abstract) names the parts: a ConvMixer (patch embedding, depthwise and pointwise
mixing with GELU and BatchNorm, global pooling, head) and a convolutional attention re-weighting
channels and positions. Its input, the sizes and where the attention sits are merkit's reading,
not the paper's: onset -> apex optical flow u, v and optical strain as a 3-channel 28 x 28 map
(the MEGC 2019 convention), CBAM after the mixer, the sizes of `CABMConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from merkit.models.blocks import CBAM, CopyDropout, DepthwiseConv2d, GroupedLinear, Residual
from merkit.models.registry import InputSpec, Preset, register_model


@dataclass
class CABMConfig:
    """Shape of the network. `patch` sets the feature-map size (28 / patch), hence the cost."""

    dim: int = 32
    depth: int = 4
    kernel: int = 7  # depthwise (spatial mixing) kernel; 7 on 7x7 tokens mixes globally
    patch: int = 4  # patch-embedding kernel = stride: 28x28 maps -> 7x7 tokens
    attention: bool = True  # CBAM on the mixer's output features
    reduction: int = 8  # channel-attention MLP reduction
    spatial_kernel: int = 7
    dropout: float = 0.0  # before the head
    center: bool = False  # subtract each map's median u and v (the face's zero-motion level)


def _conv_gelu_bn(conv: nn.Conv2d) -> nn.Sequential:
    return nn.Sequential(conv, nn.GELU(), nn.BatchNorm2d(conv.out_channels))


def center_motion(x: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Subtract the spatial median of the u and v channels (the first two of every `in_chans`).

    Published maps are min-max scaled per sample, so "no motion" sits at a different level in
    each map; most of a face does not move, so the median marks it. Strain (>= 0) is left as is.
    """
    median = x.flatten(2).median(dim=2).values[..., None, None]
    is_flow = (torch.arange(x.shape[1], device=x.device) % in_chans < 2).to(x.dtype)
    return x - median * is_flow.view(1, -1, 1, 1)


class MixerBlock(nn.Sequential):
    """Residual(depthwise k x k -> GELU -> BN) -> pointwise 1x1 -> GELU -> BN."""

    def __init__(self, dim: int, kernel: int, groups: int = 1) -> None:
        width = groups * dim
        depthwise = DepthwiseConv2d(width, kernel)
        super().__init__(
            Residual(_conv_gelu_bn(depthwise)),
            _conv_gelu_bn(nn.Conv2d(width, width, 1, groups=groups)),
        )


class CABMFMER(nn.Module):
    """ConvMixer -> CBAM re-weighting of channels and positions -> global average pool -> head."""

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 3,
        config: CABMConfig | None = None,
        groups: int = 1,
        **overrides: object,
    ) -> None:
        super().__init__()
        cfg = CABMConfig(**{**asdict(config or CABMConfig()), **overrides})
        self.config, self.groups, self.num_classes = cfg, groups, num_classes
        self.in_chans = in_chans
        width = groups * cfg.dim
        self.stem = _conv_gelu_bn(
            nn.Conv2d(groups * in_chans, width, cfg.patch, stride=cfg.patch, groups=groups)
        )
        self.mixer = nn.Sequential(
            *(MixerBlock(cfg.dim, cfg.kernel, groups) for _ in range(cfg.depth))
        )
        self.attention = (
            CBAM(cfg.dim, cfg.reduction, cfg.spatial_kernel, groups)
            if cfg.attention
            else nn.Identity()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = CopyDropout(cfg.dropout)
        self.head = GroupedLinear(cfg.dim, num_classes, groups)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Attention-weighted mixer features (B, groups*dim, H/patch, W/patch)."""
        if self.config.center:
            x = center_motion(x, self.in_chans)
        return self.attention(self.mixer(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.forward_features(x)).flatten(1)
        return self.head(self.dropout(pooled))


# merkit's recipe, chosen once by LOSO on the MEGC2019 development subjects (380 maps):
# UF1 0.7173, UAR 0.7292 (seed 0), about 340 CPU-seconds.
PRESETS = {
    "default": Preset(
        recipe={
            "model_kwargs": {"dim": 32, "depth": 4, "kernel": 7, "patch": 4},
            "epochs": 40,
            "batch_size": 64,
            "optimizer": "adamw",
            "lr": 2e-3,
            "weight_decay": 0.05,
            "schedule": "cosine",
            "warmup_epochs": 3,
            "label_smoothing": 0.1,
            "class_weighted": True,
            "augment": {"hflip": True, "max_shift": 2},
        }
    )
}


@register_model(
    "cabm",
    summary="CABM-FMER: ConvMixer + convolutional attention (input and sizes: merkit's reading, "
    "onset-apex u/v/strain maps)",
    input=InputSpec("maps", 3, (28, 28)),
    presets=PRESETS,
    groupable=True,
)
def cabm(num_classes: int = 3, in_chans: int = 3, groups: int = 1, **kwargs: object) -> CABMFMER:
    """CABM-FMER of `CABMConfig` (keyword overrides), optionally as `groups` grouped copies."""
    return CABMFMER(num_classes, in_chans, groups=groups, **kwargs)
