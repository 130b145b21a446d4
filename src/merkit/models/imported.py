"""Weights published by other code bases: their file formats and the inputs they expect.

A published network was trained on its authors' input, which is rarely merkit's: STSTNet's
released per-fold weights read the flow-map PNG as OpenCV does (channels B, G, R = strain, v, u)
with values 0..255, while merkit prepares every flow map as (u, v, strain) in 0..1. An
`InputConvention` states the difference, and `ConventionAdapter` applies it in front of the
network, so whatever feeds the model merkit's arrays (evaluation, `predict`, an ONNX export) feeds
the weights exactly what they were trained on. A `WeightFormat` says how a published state dict's
keys map onto a merkit model, so a file is checked key by key and shape by shape before use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from merkit.data.taxonomy import MEGC3_CLASSES
from merkit.errors import ConfigError


@dataclass(frozen=True)
class InputConvention:
    """How a network's input differs from merkit's prepared array.

    `channel_order[i]` is the merkit channel fed to the network's channel i; `scale` multiplies
    the values (merkit's maps are 0..1).
    """

    channel_order: tuple[int, ...]
    scale: float = 1.0
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel_order": list(self.channel_order),
            "scale": self.scale,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> InputConvention:
        try:
            order = tuple(int(i) for i in data["channel_order"])
            scale = float(data.get("scale", 1.0))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"{source}: input_convention needs channel_order (channel indices) and a "
                f"numeric scale, got {dict(data)!r}"
            ) from None
        if sorted(order) != list(range(len(order))) or not scale > 0:
            raise ConfigError(
                f"{source}: input_convention channel_order {list(order)} is not a permutation "
                f"or scale {scale} is not positive"
            )
        return cls(order, scale, str(data.get("description", "")))


class ConventionAdapter(nn.Module):
    """`net` fed merkit's arrays re-ordered and scaled as its weights expect (exports too)."""

    def __init__(self, net: nn.Module, convention: InputConvention) -> None:
        super().__init__()
        self.net = net
        order = torch.tensor(convention.channel_order, dtype=torch.long)
        self.register_buffer("order", order, persistent=False)
        self.scale = float(convention.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.index_select(1, self.order) * self.scale)


@dataclass(frozen=True)
class WeightFormat:
    """One published family of state dicts: the merkit model it fills and how its keys map."""

    name: str
    model: str
    class_names: tuple[str, ...]
    convention: InputConvention
    key_map: dict[str, str]  # published key -> merkit key (every key of both sides listed)
    source: str  # where the weights come from, for the checkpoint's metadata

    def to_merkit(
        self, state: object, reference: Mapping[str, torch.Tensor], where: str
    ) -> dict[str, torch.Tensor]:
        """The published `state` renamed to merkit's keys, checked against `reference` (the
        merkit model's own state dict); ConfigError naming the first key or shape at fault."""
        if not isinstance(state, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise ConfigError(f"{where}: not a state dict of tensors (a {self.name} weights file)")
        missing = sorted(set(self.key_map) - set(state))
        extra = sorted(set(state) - set(self.key_map))
        if missing or extra:
            parts = [f"lacks {', '.join(missing[:3])}" if missing else ""]
            parts.append(f"has unknown keys {', '.join(extra[:3])}" if extra else "")
            detail = " and ".join(p for p in parts if p)
            raise ConfigError(f"{where}: not {self.name} weights: the file {detail}")
        renamed = {}
        for key, target in self.key_map.items():
            value, expected = state[key], reference[target]
            if tuple(value.shape) != tuple(expected.shape):
                raise ConfigError(
                    f"{where}: not {self.name} weights: {key} has shape {tuple(value.shape)}, "
                    f"{self.name}'s is {tuple(expected.shape)}"
                )
            renamed[target] = value.to(expected.dtype)
        return renamed


def _ststnet_keys() -> dict[str, str]:
    """STSTNet's released names (conv1..3, bn1..3, fc) -> merkit's `ststnet` (streams 0..2)."""
    keys = {}
    for i in range(3):
        for name in ("weight", "bias"):
            keys[f"conv{i + 1}.{name}"] = f"streams.{i}.body.0.{name}"
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            keys[f"bn{i + 1}.{name}"] = f"streams.{i}.body.2.{name}"
    keys.update({"fc.weight": "head.weight", "fc.bias": "head.bias"})
    return keys


WEIGHT_FORMATS: dict[str, WeightFormat] = {
    "ststnet": WeightFormat(
        name="ststnet",
        model="ststnet",
        class_names=MEGC3_CLASSES,
        convention=InputConvention(
            (2, 1, 0),
            255.0,
            "the flow-map PNG as OpenCV reads it: channels B, G, R (strain, v, u), 0..255, "
            "no scaling",
        ),
        key_map=_ststnet_keys(),
        source="STSTNet (Liong et al. 2019), the authors' released per-fold weights",
    ),
}


def weight_format(name: str) -> WeightFormat:
    if name not in WEIGHT_FORMATS:
        known = ", ".join(sorted(WEIGHT_FORMATS))
        raise ConfigError(f"unknown weights format {name!r}; known: {known}")
    return WEIGHT_FORMATS[name]
