"""Off-ApexNet (Gan et al. 2019): two streams on the horizontal (u) and vertical (v) flow."""

from __future__ import annotations

import torch
from torch import nn

from merkit.models.blocks import ConvStream, CopyDropout, GroupedLinear, split_groups
from merkit.models.registry import InputSpec, Preset, register_model


def _stream(groups: int) -> nn.Sequential:
    """conv 5x5 (6) -> max-pool 2 -> conv 5x5 (16) -> max-pool 2, on one flow component.

    A final adaptive pool to 7x7 (the identity on the published 28x28 input) lets other sizes in.
    """
    return nn.Sequential(
        ConvStream(1, 6, 5, nn.MaxPool2d(2), groups),
        ConvStream(6, 16, 5, nn.MaxPool2d(2), groups),
        nn.AdaptiveAvgPool2d(7),
    )


class OffApexNet(nn.Module):
    """u and v streams -> flatten and concatenate -> FC 1024 -> FC 1024 -> classes.

    Only the first two input channels (u, v) are used; a strain channel, if present, is ignored.
    """

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 3,
        groups: int = 1,
        hidden: int = 1024,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if in_chans < 2:
            raise ValueError("Off-ApexNet needs at least the u and v channels")
        self.groups = groups
        self.u_stream, self.v_stream = _stream(groups), _stream(groups)
        flat = 16 * 7 * 7
        self.classifier = nn.Sequential(
            GroupedLinear(2 * flat, hidden, groups),
            nn.ReLU(inplace=True),
            CopyDropout(dropout),
            GroupedLinear(hidden, hidden, groups),
            nn.ReLU(inplace=True),
            CopyDropout(dropout),
            GroupedLinear(hidden, num_classes, groups),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = split_groups(x, self.groups)  # (B, G, C, H, W)
        u = self.u_stream(parts[:, :, 0].contiguous())
        v = self.v_stream(parts[:, :, 1].contiguous())
        b, g = x.shape[0], self.groups
        features = torch.cat([u.reshape(b, g, -1), v.reshape(b, g, -1)], dim=2)
        return self.classifier(features.reshape(b, -1))


# Gan et al. 2019: Adam, lr 1e-4, fixed schedule, no augmentation (60 epochs: merkit's).
PRESETS = {
    "default": Preset(
        recipe={
            "epochs": 60,
            "batch_size": 64,
            "optimizer": "adam",
            "lr": 1e-4,
            "weight_decay": 0.0,
            "schedule": "constant",
            "augment": {"hflip": False, "max_shift": 0},
        }
    )
}


@register_model(
    "offapexnet",
    summary="Off-ApexNet: two conv streams on the onset-apex horizontal and vertical flow",
    input=InputSpec("maps", 3, (28, 28)),
    presets=PRESETS,
    groupable=True,
)
def offapexnet(
    num_classes: int = 3, in_chans: int = 3, groups: int = 1, **kwargs: object
) -> OffApexNet:
    """Off-ApexNet, optionally as `groups` grouped copies."""
    return OffApexNet(num_classes, in_chans, groups=groups, **kwargs)
