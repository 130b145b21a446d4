"""MOL's F5C block: FCC (global circular convolutions along each axis) and CCC (EdgeConv over a
k-nearest-neighbour graph of positions), one block per frame stream of a frame pair.

Written from the authors' `modules/*.py` (facts in SEED_SYSTEMS.md section 2); `merkit.models.mol`
describes the whole network and where merkit's reading differs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def circular_conv(
    x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor, dim: int
) -> torch.Tensor:
    """Depthwise convolution along `dim` (2: H, 3: W) with a kernel as long as that axis (the
    first taps of `kernel`), wrapping around: out[i] = bias + sum_k kernel[k] x[(i + k) mod L]."""
    length = x.shape[dim]
    wrapped = torch.cat([x, x.narrow(dim, 0, length - 1)], dim=dim)
    return F.conv2d(wrapped, kernel.narrow(dim, 0, length), bias, groups=x.shape[1])


def _axis_shape(channels: int, length: int, axis: int) -> tuple[int, int, int, int]:
    return (1, channels, length, 1) if axis == 2 else (1, channels, 1, length)


def _meta_kernel(channels: int, length: int, axis: int) -> torch.Tensor:
    """A depthwise kernel along `axis`, initialised as nn.Conv2d's own weight would be."""
    weight = torch.empty(channels, *_axis_shape(1, length, axis)[1:])
    return nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


class GlobalAxisMixer(nn.Module):
    """One half of FCC: + encoding -> norm -> circular conv along the `first` axis (2: H, 3: W)
    -> + encoding -> circular conv along the other, plus the raw input."""

    def __init__(self, channels: int, meta: int, first: int) -> None:
        super().__init__()
        self.first, self.second = first, 5 - first
        self.norm = nn.BatchNorm2d(channels)
        self.kernel1 = nn.Parameter(_meta_kernel(channels, meta, first))
        self.kernel2 = nn.Parameter(_meta_kernel(channels, meta, self.second))
        self.bias1 = nn.Parameter(torch.randn(channels))
        self.bias2 = nn.Parameter(torch.randn(channels))
        self.pe1 = nn.Parameter(torch.randn(_axis_shape(channels, meta, first)))
        self.pe2 = nn.Parameter(torch.randn(_axis_shape(channels, meta, self.second)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x + self.pe1.narrow(self.first, 0, x.shape[self.first]))
        y = circular_conv(y, self.kernel1, self.bias1, self.first)
        y = y + self.pe2.narrow(self.second, 0, x.shape[self.second])
        return x + circular_conv(y, self.kernel2, self.bias2, self.second)


class FullyConnectedConv(nn.Module):
    """FCC: half A mixes along H then W, half B along W then H; global and circular."""

    def __init__(self, dim: int, meta: int) -> None:
        super().__init__()
        self.half_a = GlobalAxisMixer(dim // 2, meta, first=2)
        self.half_b = GlobalAxisMixer(dim // 2, meta, first=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.cat([self.half_a(a), self.half_b(b)], dim=1)


def cosine_neighbours(nodes: torch.Tensor, k: int) -> torch.Tensor:
    """(B, P, k) indices of each position's k most cosine-similar positions (itself first);
    `nodes` is (B, C, P), a position described by its C channel values."""
    unit = F.normalize(nodes, dim=1)
    return (unit.transpose(1, 2) @ unit).topk(k, dim=-1).indices


class ChannelCorrespondenceConv(nn.Module):
    """CCC: EdgeConv over the cosine kNN graph of positions, channel by channel, max over edges."""

    def __init__(self, positions: int, neighbours: int) -> None:
        super().__init__()
        self.k = neighbours
        self.self_map = nn.Linear(positions, positions)  # the authors' conv1 (a dense map)
        self.edge_map = nn.Linear(positions, positions)  # conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        nodes = x.flatten(2)  # (B, C, P)
        index = cosine_neighbours(nodes, self.k).flatten(1)  # (B, P * k)
        gathered = nodes.gather(2, index[:, None].expand(b, c, -1)).view(b, c, h * w, self.k)
        diff = gathered - nodes[..., None]  # d_cj, (B, C, P, k)
        edges = self.edge_map((diff - nodes[..., None]).transpose(2, 3))  # (B, C, k, P)
        return F.relu(self.self_map(nodes)[:, :, None] + edges).amax(2).view(b, c, h, w)


class F5C(nn.Module):
    """FCC, then CCC on its output added to it: the block of one frame stream."""

    def __init__(self, dim: int, meta: int, positions: int, neighbours: int) -> None:
        super().__init__()
        self.fcc = FullyConnectedConv(dim, meta)
        self.ccc = ChannelCorrespondenceConv(positions, neighbours)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fcc(x)
        return x + self.ccc(x)
