"""Building blocks shared by the models, all "group-aware".

A block built with `groups=G` holds G independent copies side by side: features are laid out
(B, G * C, H, W), copy g owning channel block g, and every weight is the copies' weights
concatenated along dim 0 (see `registry.stack_models`). With G=1 each block is the ordinary one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


def split_groups(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, G*C, ...) -> (B, G, C, ...): expose the copy axis."""
    return x.view(x.shape[0], groups, x.shape[1] // groups, *x.shape[2:])


def merge_groups(x: torch.Tensor) -> torch.Tensor:
    """(B, G, C, ...) -> (B, G*C, ...): the inverse of `split_groups`."""
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])


class CopyDropout(nn.Dropout):
    """Dropout whose masks come from one generator per copy when the engine provides them.

    Copy g's mask is drawn from `generators[g]` over its own channel block, so a copy drops the
    same units whether it trains alone or beside others (a fold's result does not depend on its
    batch companions). Without generators, or in eval mode, it is `nn.Dropout`.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)
        self.generators: list[torch.Generator] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or not self.generators:
            return super().forward(x)
        parts = x.chunk(len(self.generators), dim=1)
        keep = torch.cat(
            [
                torch.rand(part.shape, generator=gen, dtype=x.dtype) >= self.p
                for part, gen in zip(parts, self.generators, strict=True)
            ],
            dim=1,
        ).to(x.device)  # drawn from the copies' CPU generators: the same masks on any device
        return x * keep / (1 - self.p) if self.p < 1 else x * 0


def use_copy_generators(model: nn.Module, generators: list[torch.Generator] | None) -> None:
    """Hand (or with None, take back) the per-copy generators to every CopyDropout of `model`."""
    for module in model.modules():
        if isinstance(module, CopyDropout):
            module.generators = generators


@lru_cache(maxsize=16)
def _toeplitz_index(height: int, width: int, kernel: int, device: torch.device) -> torch.Tensor:
    """(P, P) index into a flattened k*k kernel (k*k: outside it) for a 'same' k x k conv, on
    `device` (cached per device: made once, never copied per step)."""
    r = kernel // 2
    rows, cols = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
    rows, cols = rows.flatten(), cols.flatten()
    d_row = rows[None, :] - rows[:, None] + r  # (out position, in position)
    d_col = cols[None, :] - cols[:, None] + r
    inside = (d_row >= 0) & (d_row < kernel) & (d_col >= 0) & (d_col < kernel)
    return torch.where(inside, d_row * kernel + d_col, kernel * kernel)


class DepthwiseConv2d(nn.Conv2d):
    """k x k depthwise convolution with 'same' padding (weights and state as nn.Conv2d).

    When training on small maps (at most `matmul_positions` positions) it runs as one batched
    matmul per channel over positions, with a Toeplitz matrix built from the kernel: the same
    function, several times faster to train on CPU than PyTorch's native depthwise backward.
    Inference (and export) uses the native convolution.
    """

    matmul_positions = 100

    def __init__(self, channels: int, kernel_size: int) -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"'same' depthwise convolution needs an odd kernel, got {kernel_size}")
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k = self.kernel_size[0]
        if not (self.training and torch.is_grad_enabled()) or h * w > self.matmul_positions:
            return super().forward(x)
        taps = F.pad(self.weight.view(c, k * k), (0, 1))  # a zero tap for out-of-kernel pairs
        matrix = taps[:, _toeplitz_index(h, w, k, x.device)]  # (C, P_out, P_in)
        out = torch.bmm(x.reshape(b, c, h * w).transpose(0, 1), matrix.transpose(1, 2))
        out = out.transpose(0, 1).reshape(b, c, h, w)
        return out if self.bias is None else out + self.bias.view(1, c, 1, 1)


class Residual(nn.Module):
    """x + fn(x)."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


class GroupedLinear(nn.Module):
    """G independent Linear layers on (B, G*in) -> (B, G*out); weight (G*out, in) like nn.Linear."""

    def __init__(self, in_features: int, out_features: int, groups: int = 1) -> None:
        super().__init__()
        self.groups, self.in_features, self.out_features = groups, in_features, out_features
        self.weight = nn.Parameter(torch.empty(groups * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(groups * out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's default initialisation, per copy."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(self.in_features)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return F.linear(x, self.weight, self.bias)
        g, i, o = self.groups, self.in_features, self.out_features
        w = self.weight.view(g, o, i)
        out = torch.einsum("bgi,goi->bgo", x.view(x.shape[0], g, i), w)
        return (out + self.bias.view(g, o)).reshape(x.shape[0], g * o)


class ChannelAttention(nn.Module):
    """CBAM's channel attention (CAM): a shared MLP on average- and max-pooled features."""

    def __init__(self, dim: int, reduction: int = 8, groups: int = 1) -> None:
        super().__init__()
        hidden = max(dim // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Conv2d(groups * dim, groups * hidden, 1, groups=groups, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(groups * hidden, groups * dim, 1, groups=groups, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        peak = self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(avg + peak)


class SpatialAttention(nn.Module):
    """CBAM's spatial attention: a k x k conv on the channel-mean and channel-max maps."""

    def __init__(self, kernel_size: int = 7, groups: int = 1) -> None:
        super().__init__()
        self.groups = groups
        self.conv = nn.Conv2d(
            2 * groups, groups, kernel_size, padding=kernel_size // 2, groups=groups
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = split_groups(x, self.groups)  # (B, G, C, H, W)
        pooled = torch.stack([parts.mean(dim=2), parts.amax(dim=2)], dim=2)  # (B, G, 2, H, W)
        weight = torch.sigmoid(self.conv(merge_groups(pooled)))  # (B, G, H, W)
        return merge_groups(parts * weight.unsqueeze(2))


class CBAM(nn.Module):
    """Convolutional attention: re-weight channels, then spatial positions (Woo et al. 2018)."""

    def __init__(self, dim: int, reduction: int = 8, kernel_size: int = 7, groups: int = 1) -> None:
        super().__init__()
        self.channel = ChannelAttention(dim, reduction, groups)
        self.spatial = SpatialAttention(kernel_size, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class ConvStream(nn.Module):
    """conv k x k -> activation -> (BatchNorm) -> max-pool: one shallow stream of the baselines."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int,
        pool: nn.Module,
        groups: int = 1,
        padding: int | None = None,
        norm: bool = False,
    ) -> None:
        super().__init__()
        pad = kernel_size // 2 if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(
                groups * in_chans, groups * out_chans, kernel_size, padding=pad, groups=groups
            ),
            nn.ReLU(inplace=True),
        ]
        if norm:
            layers.append(nn.BatchNorm2d(groups * out_chans))
        layers.append(pool)
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ProbabilityAverage(nn.Module):
    """log(mean softmax) of its members (softmax gives the mean probabilities): the seed
    members of one recipe (`Recipe.seed_members`), or several models (`recommended`)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).softmax(-1) for m in self.members]).mean(0)
        return probs.clamp_min(1e-12).log()
