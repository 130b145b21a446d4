"""The model registry: one `ModelDescriptor` per model, declared in the model's own file.

A model's file holds its class and its registration, `@register_model(name, ...)` on its builder,
and the registration is the model's whole description: what input it takes (`InputSpec`), how it
learns (`training`), whether many copies can be trained side by side (`groupable`), the models an
average is made of (`members`), its named recipes (`presets`: "default" is merkit's, others such
as "paper" are the authors'; each with the preparation keys it was made for), whether its input
packs training targets beside the frames (`packs_targets`, MOL's layout), and which optional
training hooks it defines (`hooks`). Everything else -- configs, the experiment builder, the
engines, `merkit models` -- reads the descriptor; nothing guesses from shapes or attributes.

How a model learns:
- `training="gradient"` (the default): a network fitted by the epochs of the torch engine;
- `training="closed-form"`: hand-made features and a kernel SVM (`merkit.models.svm`), fitted in
  one solve by scikit-learn (`merkit.training.closed_form`) and stored as buffers, so it saves,
  predicts and exports like a network; the recipe keys of gradient training do not apply;
- `training="average"`: an equal-weight probability average of other registered models (its
  `members`, e.g. `recommended`), each fitted by its own engine with its own shipped recipe
  (`merkit.training.average`).

Grouped copies: a `groupable` builder accepts `groups`; one module then holds `groups` independent
copies (one per fold or seed member) laid side by side in grouped convolutions. Its input is
(B, groups * in_chans, H, W) -- channel block g is copy g's batch -- and its output
(B, groups * num_classes); every tensor of its `state_dict` is the concatenation along dim 0 of
the copies' tensors, so `stack_models` / `unstack_model` move between the grouped and the ordinary
form exactly. The torch engine uses this to fit many folds at once.

Hooks (declared in `hooks`, called by the torch engine only when declared):
- "aux_loss": `aux_loss() -> Tensor | None`, called right after each training forward; the
  returned scalar (already weighted) is added to the classification loss. A grouped model returns
  the SUM over its copies, so each copy receives its own gradient unchanged.
- "criterion": `criterion(target) -> Tensor` for a model whose classification loss is not
  cross-entropy on the logits it returns (ICIP 2024's per-time-step weighted loss). Called right
  after each training forward with the batch's soft targets laid out like the logits ((B, K),
  grouped (B, G * K)); the per-sample losses it returns ((B,), grouped (B, G)) replace the
  engine's cross-entropy and are weighted and averaged per copy as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from merkit.errors import ConfigError
from merkit.preprocess.config import INPUT_KINDS

TRAININGS = ("gradient", "closed-form", "average")
HOOKS = ("aux_loss", "criterion")
DEFAULT_PRESET = "default"


@dataclass(frozen=True)
class InputSpec:
    """What a model consumes: `kind` (an input kind of `PrepareConfig.output`), channels per
    frame, (H, W) and frames per clip."""

    kind: str = "maps"
    channels: int = 3
    size: tuple[int, int] = (28, 28)
    frames: int = 1

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"input kind must be one of {INPUT_KINDS}, got {self.kind!r}")

    @property
    def in_chans(self) -> int:
        """Channels of the 4-D input the model sees: sequences arrive as (B, T*C, H, W)."""
        return self.channels * self.frames if self.kind == "sequence" else self.channels

    def label(self) -> str:
        """`3x28x28`, or `30x3x128x128` (frames x channels x H x W) for sequences."""
        dims = (self.frames, self.channels) if self.kind == "sequence" else (self.channels,)
        return "x".join(str(d) for d in (*dims, *self.size))

    def prepare_keys(self) -> dict[str, Any]:
        """The `PrepareConfig` keys that make arrays of this input."""
        keys: dict[str, Any] = {"output": self.kind, "size": self.size[0]}
        if self.kind != "maps":
            keys["color"] = self.channels == 3
        if self.kind == "sequence":
            keys["frames"] = self.frames
        return keys


@dataclass(frozen=True)
class Preset:
    """A named recipe of a model: `recipe` holds `Recipe` keys over the dataclass defaults, and
    `input` the `PrepareConfig` keys it was made for, over what the model's input implies
    (e.g. the authors' 30 RGB frames of 128 x 128 where the default recipe is CPU-sized)."""

    recipe: Mapping[str, Any] = field(default_factory=dict)
    input: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelDescriptor:
    """Everything merkit knows about a registered model; see the module docstring."""

    name: str
    builder: Callable[..., nn.Module]
    summary: str  # one line for `merkit models`: what it is, and whose reading it is
    input: InputSpec
    presets: Mapping[str, Preset]
    training: str = "gradient"
    groupable: bool = False
    members: tuple[str, ...] = ()
    packs_targets: bool = False
    hooks: frozenset[str] = frozenset()

    @property
    def closed_form(self) -> bool:
        return self.training == "closed-form"

    def preset(self, name: str = DEFAULT_PRESET) -> Preset:
        """The named recipe; a ConfigError listing the model's presets if there is none."""
        try:
            return self.presets[name]
        except KeyError:
            known = ", ".join(self.presets)
            raise ConfigError(
                f"model {self.name!r} has no recipe preset {name!r}; its presets: {known}"
            ) from None

    def prepare_keys(self, preset: str = DEFAULT_PRESET) -> dict[str, Any]:
        """PrepareConfig keys of the model's input, with those its preset was made for."""
        return {**self.input.prepare_keys(), **self.preset(preset).input}


_MODELS: dict[str, ModelDescriptor] = {}


def register_model(
    name: str,
    *,
    summary: str,
    input: InputSpec,
    presets: Mapping[str, Preset] | None = None,
    training: str = "gradient",
    groupable: bool = False,
    members: tuple[str, ...] = (),
    packs_targets: bool = False,
    hooks: tuple[str, ...] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder, called as `builder(num_classes=..., in_chans=...,
    **model_kwargs)` (plus `groups=` when `groupable`), with the model's descriptor.

    A gradient model must name its "default" preset; a closed-form model or an average has no
    training schedule of its own, so its default preset may be left out (nothing to set).
    """
    if training not in TRAININGS:
        raise ValueError(f"training must be one of {TRAININGS}, got {training!r}")
    if (training == "average") != bool(members):
        raise ValueError("an average names its members, and only an average has members")
    presets = dict(presets or {})
    if training != "gradient":
        presets.setdefault(DEFAULT_PRESET, Preset())
    if next(iter(presets), None) != DEFAULT_PRESET:
        raise ValueError(f"model {name!r}: the first preset must be {DEFAULT_PRESET!r}")
    if unknown := set(hooks) - set(HOOKS):
        raise ValueError(f"model {name!r}: unknown hooks {sorted(unknown)}; known: {HOOKS}")

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = ModelDescriptor(
            name=name,
            builder=builder,
            summary=summary,
            input=input,
            presets=MappingProxyType(presets),
            training=training,
            groupable=groupable,
            members=tuple(members),
            packs_targets=packs_targets,
            hooks=frozenset(hooks),
        )
        return builder

    return decorator


def get_descriptor(name: str) -> ModelDescriptor:
    """The descriptor of `name`; a ConfigError listing the known models if there is none."""
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join(sorted(_MODELS)) or "none"
        raise ConfigError(f"unknown model {name!r}; registered models: {known}") from None


def create_model(
    name: str, num_classes: int = 3, in_chans: int | None = None, **kwargs: object
) -> nn.Module:
    """Build a registered model; `in_chans` defaults to the channels of its input."""
    descriptor = get_descriptor(name)
    groups = kwargs.pop("groups", 1)
    if descriptor.groupable:
        kwargs["groups"] = groups
    elif groups != 1:
        raise ConfigError(f"model {name!r} cannot be built grouped (groups={groups})")
    chans = descriptor.input.in_chans if in_chans is None else in_chans
    try:
        return descriptor.builder(num_classes=num_classes, in_chans=chans, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad options for model {name!r}: {exc}") from None


def list_models(kind: str | None = None) -> list[str]:
    """Names of the registered models, optionally only those whose input is of `kind`."""
    return sorted(n for n, d in _MODELS.items() if kind is None or d.input.kind == kind)


def stack_models(models: list[nn.Module], grouped: nn.Module) -> nn.Module:
    """Load the ordinary `models` into `grouped` (built with groups=len(models)) as its copies."""
    states = [m.state_dict() for m in models]
    merged = {
        key: _cat_or_first([s[key] for s in states])
        for key in grouped.state_dict()
        if key in states[0]
    }
    grouped.load_state_dict(merged)
    return grouped


def unstack_model(grouped: nn.Module, index: int, single: nn.Module, groups: int) -> nn.Module:
    """Copy copy `index` of a grouped model (of `groups` copies) into the ordinary `single`."""
    state = {}
    for key, value in grouped.state_dict().items():
        if value.ndim == 0:
            state[key] = value.clone()
        else:
            state[key] = value.chunk(groups, dim=0)[index].clone()
    single.load_state_dict(state)
    return single


def _cat_or_first(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-copy tensors along dim 0; scalars (BatchNorm's counter) are shared."""
    return tensors[0].clone() if tensors[0].ndim == 0 else torch.cat(tensors, dim=0)
