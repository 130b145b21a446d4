"""STSTNet (Liong et al. 2019): three shallow parallel streams on 28x28 u/v/strain maps."""

from __future__ import annotations

import torch
from torch import nn

from merkit.models.blocks import ConvStream, CopyDropout, GroupedLinear, merge_groups, split_groups
from merkit.models.registry import InputSpec, Preset, register_model


class STSTNet(nn.Module):
    """3x3 convs of 3, 5 and 8 filters -> ReLU -> BN -> max-pool 3/3 -> dropout, concatenated,
    average-pooled to 5x5 and classified by one fully connected layer (as the authors' code)."""

    widths = (3, 5, 8)

    def __init__(
        self, num_classes: int = 3, in_chans: int = 3, groups: int = 1, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.groups = groups
        self.streams = nn.ModuleList(
            ConvStream(
                in_chans, w, 3, nn.MaxPool2d(3, stride=3, padding=1), groups, padding=2, norm=True
            )
            for w in self.widths
        )
        self.dropout = CopyDropout(dropout)
        self.pool = nn.AdaptiveAvgPool2d(5)  # = AvgPool2d(2) on 28x28 input, as published
        self.head = GroupedLinear(sum(self.widths) * 25, num_classes, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [split_groups(self.dropout(s(x)), self.groups) for s in self.streams]
        features = self.pool(merge_groups(torch.cat(parts, dim=2)))
        return self.head(features.flatten(1))


# The authors' code: Adam, lr 5e-5, batch 256, 800 epochs, last epoch kept. merkit's default:
# the same optimiser and fixed schedule with 4x smaller batches and a 10x larger step, 100 epochs.
PRESETS = {
    "default": Preset(
        recipe={
            "epochs": 100,
            "batch_size": 64,
            "optimizer": "adam",
            "lr": 5e-4,
            "weight_decay": 0.0,
            "schedule": "constant",
            "augment": {"hflip": False, "max_shift": 0},
        }
    )
}


@register_model(
    "ststnet",
    summary="STSTNet: three shallow parallel 2-D conv streams on u/v/strain maps (authors' code)",
    input=InputSpec("maps", 3, (28, 28)),
    presets=PRESETS,
    groupable=True,
)
def ststnet(num_classes: int = 3, in_chans: int = 3, groups: int = 1, **kwargs: object) -> STSTNet:
    """STSTNet, optionally as `groups` grouped copies."""
    return STSTNet(num_classes, in_chans, groups=groups, **kwargs)
