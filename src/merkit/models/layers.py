"""Layers shared by the sequence and token models (ConVAT, C3D-GRU, MOL).

Kept apart from `blocks.py` because these are not group-aware: the models built from them train
one copy at a time. Sequence models all read the same input layout, defined here once:

    x: (B, T * C, H, W), frame-major -- channels t*C .. t*C + C - 1 are frame t.

That is a prepared "sequence" array (N, T, C, H, W) reshaped to (N, T * C, H, W), so the engine
keeps handling every input as a 4-D batch of maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from merkit.errors import ConfigError
from merkit.models.blocks import ChannelAttention


def frames_in(in_chans: int, frame_channels: int, model: str, minimum: int = 1) -> int:
    """How many frames an input of `in_chans` stacked channels holds; a ConfigError if none fit."""
    frames, rest = divmod(in_chans, frame_channels)
    if rest or frames < minimum:
        raise ConfigError(
            f"model {model!r} takes (B, T * {frame_channels}, H, W) clips of at least {minimum} "
            f"frames of {frame_channels} channels each, got {in_chans} input channels"
        )
    return frames


def unstack_frames(x: torch.Tensor, frame_channels: int) -> torch.Tensor:
    """(B, T*C, H, W) -> (B, T, C, H, W): expose the frame axis of the sequence layout."""
    b, tc, h, w = x.shape
    return x.view(b, tc // frame_channels, frame_channels, h, w)


class ChannelAttention3d(nn.Module):
    """CBAM's channel attention (CAM) on (B, C, T, H, W) volumes.

    Pooling over T, H and W together equals 2-D pooling over (T*H, W), so this reuses the 2-D
    module on a view instead of duplicating its MLP.
    """

    def __init__(self, dim: int, reduction: int = 8) -> None:
        super().__init__()
        self.cam = ChannelAttention(dim, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        return self.cam(x.reshape(b, c, t * h, w)).view(b, c, t, h, w)


class SelfAttention(nn.Module):
    """Multi-head self-attention on (B, N, D) tokens through `scaled_dot_product_attention`.

    Written out rather than `nn.MultiheadAttention` so that its fused fast path (which the FLOP
    counter cannot see) never runs and train and eval compute the same thing.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"attention width {dim} must be a multiple of its {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer (ViT): x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class GaussianLatent(nn.Module):
    """A reparameterised diagonal Gaussian latent (VAE): z = mu + sigma * eps while training.

    Evaluation returns the mean, so predictions are deterministic. `kl` holds the batch-mean
    KL(q(z|x) || N(0, I)) of the last training forward (None otherwise).
    """

    def __init__(self, in_features: int, latent: int) -> None:
        super().__init__()
        self.mu = nn.Linear(in_features, latent)
        self.logvar = nn.Linear(in_features, latent)
        self.kl: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.mu(h), self.logvar(h).clamp(-10.0, 10.0)
        if not self.training:
            self.kl = None
            return mu
        self.kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)).mean()
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


def conv_bn_act(
    in_chans: int, out_chans: int, kernel: int = 3, stride: int = 1, act: type[nn.Module] = nn.GELU
) -> nn.Sequential:
    """conv k x k (same padding) -> BatchNorm -> activation: the stems' unit."""
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_chans),
        act(),
    )
