"""Map + SVM: the flow maps themselves, centred and averaged over a coarse grid, then a kernel SVM.

The plainest reading of an onset-apex u/v/strain map: where on the face, and how much, each
channel moved. Each map is min-max scaled on its own, so each channel is first centred on its
median (the no-motion level, where most of the face sits), then area-averaged over a 7x7 grid
(4x4-pixel blocks of a 28x28 map), and the 3 x 49 cell means feed the same StandardScaler + RBF
SVC (C=1, gamma "scale", balanced class weights) + temperature head as `hoof-svm`. Where HOOF
sums each cell's motion per direction over 4x4 coarse cells, this keeps the signed mean
displacement and strain of finer cells: the two make different errors, which `recommended` uses.

Under LOSO on the 380 MEGC2019 development maps it gives UF1 0.76 (README has the figure): above
`hoof-svm` (0.74) and the default `cabm` recipe (0.72), in seconds of CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from merkit.models.registry import InputSpec, register_model
from merkit.models.svm import FeatureSVM, SVMHead, check_grid, grid_mean, median_centred


class CellMeans(nn.Module):
    """(N, C, H, W) maps -> (N, C * grid^2): each channel minus its median, averaged per cell."""

    def __init__(self, grid: int = 7) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"map-svm takes (N, C, H, W) maps, got {tuple(x.shape)}")
        check_grid("map-svm", self.grid, x.shape[-2], x.shape[-1])
        return grid_mean(median_centred(x), self.grid).flatten(1)


@register_model(
    "map-svm",
    summary="Map + SVM: median-centred u/v/strain averaged over a 7x7 grid, RBF kernel SVM",
    input=InputSpec("maps", 3, (28, 28)),
    training="closed-form",
)
def map_svm(
    num_classes: int = 3,
    in_chans: int = 3,
    grid: int = 7,
    kernel: str = "rbf",
    C: float = 1.0,
    gamma: float | str = "scale",
) -> FeatureSVM:
    """Cell means of a `grid` x `grid` grid + SVM."""
    del in_chans  # any number of channels: each is centred and averaged on its own
    return FeatureSVM(CellMeans(grid), SVMHead(num_classes, kernel, C, gamma))
