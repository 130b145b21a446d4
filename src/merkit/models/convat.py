"""ConVAT: convolutional tokens -> transformer encoder -> variational latent -> classifier.

The source (an abstract) names the outline: a convolutional feature extractor, multi-head
self-attention over its tokens, a classifier, and "variational" in the title without saying what
is variational. Everything else is merkit's reading, set to the most common choices and kept in
`ConVATConfig`; in particular the variational part -- a reparameterised Gaussian latent before
the head, regularised by a KL term -- is merkit's reading of that word, not the paper's design:

- stem: `stem_strides` stride-2 conv-BN-GELU units (28x28 maps -> 7x7), one stride-1 unit first;
- tokens: the feature map average-pooled to a fixed `grid` x `grid` (so any input size works
  with one learned positional table), plus a learned class token (ViT); `pool="mean"` averages
  the tokens instead;
- encoder: pre-norm ViT layers (LayerNorm, MHSA, GELU MLP);
- latent: mu and log-variance from linear maps of the pooled token, z = mu + sigma * eps while
  training and z = mu at evaluation; the KL divergence to N(0, I), summed over latent units and
  averaged over the batch, is returned by `aux_loss()` times `kl_weight` (a beta-VAE /
  variational-information-bottleneck weight; 1e-3 by default, so it regularises, not dominates);
- no decoder: the latent feeds the classifier only.

Inputs: flow maps (u, v, strain) or apex images (1 or 3 channels) of any size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from merkit.errors import ConfigError
from merkit.models.layers import GaussianLatent, TransformerLayer, conv_bn_act
from merkit.models.registry import InputSpec, Preset, register_model

POOLS = ("cls", "mean")


@dataclass
class ConVATConfig:
    """Shape of the network; the defaults suit 28x28 maps and train in seconds on a CPU."""

    width: int = 16  # channels of the first (stride-1) stem unit
    dim: int = 48  # token width
    stem_strides: int = 2  # stride-2 stem units: 28 -> 7
    grid: int = 7  # tokens per side after pooling
    depth: int = 2  # transformer layers
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    pool: str = "cls"  # "cls" token or "mean" of the tokens
    latent: int = 32
    kl_weight: float = 1e-3

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ConfigError(f"convat pool {self.pool!r} must be one of {POOLS}")
        if min(self.width, self.dim, self.grid, self.depth, self.heads, self.latent) < 1:
            raise ConfigError("convat width, dim, grid, depth, heads and latent must be >= 1")


class ConVAT(nn.Module):
    """Conv stem -> grid x grid tokens (+ class token) -> transformer -> Gaussian latent -> head."""

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 3,
        config: ConVATConfig | None = None,
        **overrides: object,
    ) -> None:
        super().__init__()
        cfg = ConVATConfig(**{**asdict(config or ConVATConfig()), **overrides})
        self.config = cfg
        units = [conv_bn_act(in_chans, cfg.width)]
        chans = cfg.width
        for _ in range(cfg.stem_strides):
            units.append(conv_bn_act(chans, cfg.dim, stride=2))
            chans = cfg.dim
        if chans != cfg.dim:
            units.append(conv_bn_act(chans, cfg.dim, kernel=1))
        self.stem = nn.Sequential(*units)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid * cfg.grid, cfg.dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.pool == "cls" else None
        self.encoder = nn.Sequential(
            *(
                TransformerLayer(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                for _ in range(cfg.depth)
            )
        )
        self.norm = nn.LayerNorm(cfg.dim)
        self.latent = GaussianLatent(cfg.dim, cfg.latent)
        self.head = nn.Linear(cfg.latent, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, grid*grid [+1], dim) position-embedded tokens of the conv features."""
        features = self.stem(x)
        if features.shape[-2:] != (self.config.grid, self.config.grid):
            features = F.adaptive_avg_pool2d(features, self.config.grid)
        tokens = features.flatten(2).transpose(1, 2) + self.pos_embed
        if self.cls_token is None:
            return tokens
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled (B, dim) encoder output that the latent is computed from."""
        encoded = self.norm(self.encoder(self.tokens(x)))
        return encoded[:, 0] if self.cls_token is not None else encoded.mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.latent(self.forward_features(x)))

    def aux_loss(self) -> torch.Tensor | None:
        """kl_weight * KL of the last training forward (returned once), else None."""
        kl, self.latent.kl = self.latent.kl, None
        return None if kl is None else self.config.kl_weight * kl


# merkit's: a short fixed schedule measured on the synthetic LOSO benchmark
# (benchmarks/family_synthetic.py).
PRESETS = {
    "default": Preset(
        recipe={
            "epochs": 20,
            "batch_size": 16,
            "optimizer": "adamw",
            "lr": 2e-3,
            "weight_decay": 0.05,
            "schedule": "cosine",
            "augment": {"hflip": True, "max_shift": 2},
        }
    )
}


@register_model(
    "convat",
    summary="ConVAT: conv tokens + transformer encoder (the variational latent and sizes: "
    "merkit's reading)",
    input=InputSpec("maps", 3, (28, 28)),
    presets=PRESETS,
    hooks=("aux_loss",),
)
def convat(num_classes: int = 3, in_chans: int = 3, **kwargs: object) -> ConVAT:
    """ConVAT of `ConVATConfig` (keyword overrides)."""
    return ConVAT(num_classes, in_chans, **kwargs)
