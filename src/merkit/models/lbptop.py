"""LBP-TOP + SVM: local binary patterns on three orthogonal planes of a clip, then an SVM.

The dynamic-texture baseline of micro-expression recognition (Zhao and Pietikainen 2007; the
baseline of CASME II, SMIC and MEGC). Every interior point of the grey clip (T, H, W) gets three
codes: the uniform LBP of its neighbourhood in the XY plane (appearance), the XT plane and the
YT plane (horizontal and vertical motion over time). Each block of a grid over the face gives
one histogram per plane, as fractions of its points; the histograms are concatenated.

merkit's settings: P = 8 neighbours on a circle of radius R = 1 in all three planes (a time
radius of 1 keeps an interior in short clips: 3 frames are enough, and the 8 frames merkit
resamples by default leave 6), bilinear interpolation of the diagonal neighbours, the 59 labels
of the uniform ("u2") patterns, and 5x5 blocks: about 12 pixels of a 64-pixel face, the scale of
an eye, a brow or a mouth corner. (The exact radii and neighbour counts of the MEGC baseline
could not be checked offline, so merkit does not claim to reproduce them.) Then a LINEAR SVM:
the histograms are long (3 x 5 x 5 x 59 = 4425 values) beside the few hundred clips of a
dataset, where a linear boundary already separates the training samples and an RBF kernel adds
a width to choose without data to choose it on (on the synthetic LOSO benchmark the RBF kernel
gave UF1 0.27 against the linear 0.37).

The codes follow scikit-image's `local_binary_pattern` (bit p is neighbour p at angle 2 pi p / P
counter-clockwise from the right, set when it is >= the centre), written in torch ops so that the
same code fits, predicts and exports; tests check it against scikit-image.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from merkit.errors import ConfigError
from merkit.models.registry import InputSpec, register_model
from merkit.models.svm import FeatureSVM, SVMHead, cell_index, check_grid

PLANES = ("xy", "xt", "yt")
# The two volume axes (of N, T, H, W) spanned by each plane: (row axis, column axis).
_PLANE_AXES = {"xy": (2, 3), "xt": (1, 3), "yt": (1, 2)}


def uniform_labels(points: int) -> torch.Tensor:
    """(2^points,) label of every code: uniform patterns (at most two 0/1 transitions around
    the circle) numbered in code order, every other pattern the last label. A lookup table
    computed on the CPU whatever the default device, so the model builds on the meta device."""
    with torch.device("cpu"):
        codes = torch.arange(2**points)
        bits = (codes[:, None] >> torch.arange(points)[None, :]) & 1
        transitions = (bits != bits.roll(1, dims=1)).sum(1)
        uniform = transitions <= 2
        labels = torch.full((2**points,), int(uniform.sum()), dtype=torch.long)
        labels[uniform] = torch.arange(int(uniform.sum()))
    return labels


def neighbour_taps(points: int, radius: float) -> list[list[tuple[int, int, float]]]:
    """Per neighbour, the (row, column) pixel offsets and bilinear weights that sample it.

    Offsets are rounded to 5 decimals first, as scikit-image does, so the axis neighbours of a
    circle of radius 1 fall exactly on pixels."""
    taps = []
    for p in range(points):
        angle = 2 * math.pi * p / points
        row, col = round(-radius * math.sin(angle), 5), round(radius * math.cos(angle), 5)
        r0, c0 = math.floor(row), math.floor(col)
        fr, fc = row - r0, col - c0
        corners = [
            (r0, c0, (1 - fr) * (1 - fc)),
            (r0, c0 + 1, (1 - fr) * fc),
            (r0 + 1, c0, fr * (1 - fc)),
            (r0 + 1, c0 + 1, fr * fc),
        ]
        taps.append([c for c in corners if c[2] > 0])
    return taps


def _window(volume: torch.Tensor, margin: int, shift: tuple[int, int, int]) -> torch.Tensor:
    """The interior of (N, T, H, W) (`margin` off each side of every axis), moved by `shift`."""
    for axis, step in zip((1, 2, 3), shift, strict=True):
        volume = volume.narrow(axis, margin + step, volume.shape[axis] - 2 * margin)
    return volume


def lbp_codes(
    volume: torch.Tensor,
    planes: tuple[str, ...] = PLANES,
    points: int = 8,
    radius: float = 1.0,
) -> torch.Tensor:
    """(N, T, H, W) -> (N, len(planes), T - 2m, H - 2m, W - 2m) LBP codes in each plane at every
    point of the interior (m = ceil(radius)), as float values 0 .. 2^points - 1.

    Each neighbour is a weighted sum of differences between pixels and the centre (computed once
    per pixel offset for all planes), so a flat patch gives exactly 0: the bit is set."""
    margin = math.ceil(radius)
    taps = neighbour_taps(points, radius)
    weights: dict[tuple[int, int, tuple[int, int, int]], float] = {}
    for q, plane in enumerate(planes):
        rows, cols = _PLANE_AXES[plane]
        for p, neighbour in enumerate(taps):
            for row, col, weight in neighbour:
                shift = [0, 0, 0]
                shift[rows - 1], shift[cols - 1] = row, col
                weights[q, p, (shift[0], shift[1], shift[2])] = weight
    offsets = sorted({shift for _, _, shift in weights})
    mixing = torch.zeros(len(planes), points, len(offsets), dtype=volume.dtype)
    for (q, p, shift), weight in weights.items():
        mixing[q, p, offsets.index(shift)] = weight
    centre = _window(volume, margin, (0, 0, 0))
    differences = torch.stack([_window(volume, margin, o) - centre for o in offsets], dim=1)
    neighbours = torch.einsum("qpo,nothw->nqpthw", mixing, differences)
    powers = (2.0 ** torch.arange(points, dtype=volume.dtype))[None, None, :, None, None, None]
    return ((neighbours >= 0).to(volume.dtype) * powers).sum(2)


class LBPTOP(nn.Module):
    """(N, T, H, W) grey clips -> (N, blocks^2 * 3 * labels) block histograms of uniform LBP
    codes in the XY, XT and YT planes."""

    def __init__(self, blocks: int = 5, points: int = 8, radius: float = 1.0) -> None:
        super().__init__()
        if not 3 <= points <= 16:
            raise ConfigError(f"lbptop-svm: points must be between 3 and 16, got {points}")
        if radius < 1:
            raise ConfigError(f"lbptop-svm: radius must be at least 1, got {radius}")
        self.blocks, self.points, self.radius = blocks, points, float(radius)
        self.register_buffer("labels", uniform_labels(points), False)
        self.num_labels = int(self.labels.max()) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        margin = math.ceil(self.radius)
        if x.ndim != 4 or min(x.shape[1:]) < 2 * margin + 1:
            raise ValueError(
                f"LBP-TOP takes (N, T, H, W) grey clips of at least {2 * margin + 1} frames, "
                f"got {tuple(x.shape)}"
            )
        check_grid("lbptop-svm", self.blocks, x.shape[2] - 2 * margin, x.shape[3] - 2 * margin)
        labels = self.labels[lbp_codes(x, PLANES, self.points, self.radius).long()]
        frames, height, width = labels.shape[2:]
        rows, cols = cell_index(height, self.blocks), cell_index(width, self.blocks)
        block = rows.argmax(1)[:, None] * self.blocks + cols.argmax(1)[None, :]  # of each pixel
        block = block.expand(frames, height, width)
        planes = torch.arange(len(PLANES))[:, None, None, None]
        # One histogram bin per (plane, block, label), counted by a scatter-add: a one-hot of
        # every point's label would be 59 times the clip's size.
        index = ((planes * self.blocks**2 + block) * self.num_labels + labels).flatten(1)
        size = len(PLANES) * self.blocks**2 * self.num_labels
        counts = torch.zeros(x.shape[0], size, dtype=x.dtype).scatter_add(
            1, index, torch.ones_like(index, dtype=x.dtype)
        )
        points = (frames * rows.sum(0)[:, None] * cols.sum(0)[None, :]).flatten().to(x.dtype)
        histograms = counts.unflatten(1, (len(PLANES), -1, self.num_labels))
        return (histograms / points[:, None]).flatten(1)  # fractions of each block's points


@register_model(
    "lbptop-svm", input_spec=InputSpec("sequence", 1, (64, 64), frames=8), training="closed-form"
)
def lbptop_svm(
    num_classes: int = 3,
    in_chans: int = 8,
    blocks: int = 5,
    points: int = 8,
    radius: float = 1.0,
    kernel: str = "linear",
    C: float = 1.0,
    gamma: float | str = "scale",
) -> FeatureSVM:
    """LBP-TOP + SVM: uniform LBP histograms of XY/XT/YT planes per block, linear SVM."""
    return FeatureSVM(LBPTOP(blocks, points, radius), SVMHead(num_classes, kernel, C, gamma))
