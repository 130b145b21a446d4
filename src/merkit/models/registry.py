"""Model registry: `@register_model`, `create_model`, `list_models`, and what input a model takes.

Every model declares an `InputSpec` (flow maps, apex images or frame sequences; channels; default
size) so that a runner can build the right preprocessing without knowing the model.

Models registered with `groupable=True` accept a `groups` keyword: one module then holds `groups`
independent copies of the model (one per fold or ensemble member) laid side by side in grouped
convolutions. Its input is (B, groups * in_chans, H, W) -- channel block g is copy g's batch -- and
its output (B, groups * num_classes). Every tensor of its `state_dict` is the concatenation, along
dim 0, of the copies' tensors, so `stack_models` / `unstack_model` move between the grouped and the
ordinary (groups=1) form exactly. The training engine uses this to fit many folds at once on CPU.

How a model learns is part of its entry: `training="gradient"` (the default) for networks fitted
by the epochs of the torch engine, `training="closed-form"` for the classic models (hand-made
features and a kernel SVM, `merkit.models.svm`), fitted in one solve by scikit-learn
(`merkit.training.closed_form`) and stored as buffers, so they save, predict and export like a
network. The recipe keys of gradient training (epochs, optimiser, augmentation) do not apply
to them. `training="ensemble"` marks a probability average of other registered models (its
`members`, e.g. `recommended`): each member is fitted by its own engine with its own shipped
recipe, and the fitted members are averaged (`merkit.training.ensemble`).

Auxiliary losses: a model may define `aux_loss() -> Tensor | None`, called by the engine right
after each training forward; the returned scalar (already weighted) is added to the
classification loss. A grouped model returns the SUM over its copies, so each copy receives its
own gradient unchanged.

Own criterion: a model whose classification loss is not cross-entropy on the logits it returns
(ICIP 2024's per-time-step weighted loss) may define `criterion(target) -> Tensor`. The engine
calls it right after each training forward with that batch's soft targets (one-hot, smoothed or
mixed as the recipe says), laid out like the logits ((B, K), grouped (B, G * K)), and uses the
returned per-sample losses ((B,), grouped (B, G)) in place of its cross-entropy: it weights and
averages them per copy as its own (recipe.class_weighted) and adds `aux_loss()` as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from merkit.errors import ConfigError
from merkit.preprocess.config import INPUT_KINDS

TRAININGS = ("gradient", "closed-form", "ensemble")


@dataclass(frozen=True)
class InputSpec:
    """What a model consumes: `kind` flow/apex/sequence, channels, (H, W) and frames per clip."""

    kind: str = "flow"
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


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder, its input, whether it can be built grouped, how it is
    trained ("gradient", "closed-form" or "ensemble") and, for an ensemble, its members."""

    name: str
    builder: Callable[..., nn.Module]
    input_spec: InputSpec
    groupable: bool
    description: str
    training: str = "gradient"
    members: tuple[str, ...] = ()

    @property
    def closed_form(self) -> bool:
        return self.training == "closed-form"


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    input_spec: InputSpec | None = None,
    groupable: bool = False,
    training: str = "gradient",
    members: tuple[str, ...] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class or function decorator adding a model builder under `name`.

    The builder is called as `builder(num_classes=..., in_chans=..., **kwargs)` (plus `groups=`
    when `groupable`).
    """

    if training not in TRAININGS:
        raise ValueError(f"training must be one of {TRAININGS}, got {training!r}")
    if (training == "ensemble") != bool(members):
        raise ValueError("an ensemble names its members, and only an ensemble has members")

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        doc = (builder.__doc__ or "").strip().splitlines()
        _MODELS[name] = ModelEntry(
            name=name,
            builder=builder,
            input_spec=input_spec or InputSpec(),
            groupable=groupable,
            description=doc[0] if doc else "",
            training=training,
            members=tuple(members),
        )
        return builder

    return decorator


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry of `name`; a ConfigError listing the known models if there is none."""
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join(sorted(_MODELS)) or "none"
        raise ConfigError(f"unknown model {name!r}; registered models: {known}") from None


def create_model(
    name: str, num_classes: int = 3, in_chans: int | None = None, **kwargs: object
) -> nn.Module:
    """Build a registered model; `in_chans` defaults to the channels of its input spec."""
    entry = get_model_entry(name)
    groups = kwargs.pop("groups", 1)
    if entry.groupable:
        kwargs["groups"] = groups
    elif groups != 1:
        raise ConfigError(f"model {name!r} cannot be built grouped (groups={groups})")
    chans = entry.input_spec.in_chans if in_chans is None else in_chans
    try:
        return entry.builder(num_classes=num_classes, in_chans=chans, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad options for model {name!r}: {exc}") from None


def list_models(kind: str | None = None) -> list[str]:
    """Names of the registered models, optionally only those whose input is of `kind`."""
    return sorted(n for n, e in _MODELS.items() if kind is None or e.input_spec.kind == kind)


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
