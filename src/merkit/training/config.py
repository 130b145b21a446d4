"""An experiment as one plain, YAML-round-trippable config: data, preparation, protocol, recipe.

A config file only needs the keys it changes: `recipe` keys override the shipped recipe of the
model it names (`default_recipe(recipe.model, recipe.preset)`; `recommended` when it names
none; the preset "default" unless the
config names another, e.g. "paper"), `prepare` keys override what the model's declared input
and that preset imply (flow maps, apex images or frame sequences, their size), everything else
overrides the dataclass defaults. Unknown keys are errors, so a typo never silently falls back to
a default.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from merkit.errors import ConfigError
from merkit.io import plain, read_yaml, write_yaml_atomic
from merkit.models import get_model_entry
from merkit.models.inputs import packs_targets
from merkit.preprocess.config import PrepareConfig
from merkit.preprocess.regions import region_layout
from merkit.training.augment import U_SCALINGS
from merkit.training.executors import EXECUTORS
from merkit.training.recipe import (
    DEFAULT_MODEL,
    AugmentConfig,
    Recipe,
    default_recipe,
    preset_input,
)

# Keys that change how fast a run goes, not what it computes: ignored when a run folder is
# checked against the config that resumes it.
RUNTIME_KEYS = ("workers", "cache_dir", "executor", "executor_workers", "ray_address")
SEED_LIMIT = 2**32  # numpy's and scikit-learn's seeds are 32-bit unsigned integers


def check_seed(seed: int, what: str) -> None:
    """Refuse, before any work, a seed the random generators cannot take."""
    if not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"{what}: {seed} is not a seed; expected 0 to {SEED_LIMIT - 1}")


@dataclass
class DataConfig:
    """Which dataset to load, from where, with which label taxonomy and loader options."""

    name: str = "megc2019-flow"
    root: str = ""
    taxonomy: str | None = None  # None: the loader's own default
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProtocolConfig:
    """The evaluation protocol; `allow_leakage` must be set to run a subject-leaking one."""

    name: str = "loso"
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {n_splits: 10, seed: 0}
    allow_leakage: bool = False


@dataclass
class ExperimentConfig:
    """Everything that decides a run's figures (plus the RUNTIME_KEYS, which do not).

    `extra_recipes` ensemble other models with the main recipe: their per-fold class
    probabilities are averaged with the main recipe's. Each seed in `seeds` repeats the whole
    protocol; multi-seed runs report every seed and the mean and std over seeds.
    """

    data: DataConfig = field(default_factory=DataConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    recipe: Recipe = field(default_factory=Recipe)
    extra_recipes: list[Recipe] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    workers: int = 1
    cache_dir: str | None = None  # preprocessing cache; None: no cache
    executor: str = "local"  # where training jobs run: local, processes or ray
    executor_workers: int = 0  # parallel training jobs; 0: one per core (local: always 1)
    ray_address: str | None = None  # "auto" or a cluster address; None: start a local Ray

    @property
    def recipes(self) -> list[Recipe]:
        return [self.recipe, *self.extra_recipes]

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe dict (tuples become lists, paths strings)."""
        return plain(dataclasses.asdict(self))

    def identity(self) -> dict[str, Any]:
        """The part of the config that decides the results (runtime keys removed)."""
        data = self.to_dict()
        for key in RUNTIME_KEYS:
            data.pop(key, None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> ExperimentConfig:
        """Build from a (partial) dict; unknown keys raise ConfigError naming the key."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping of config keys, got {_kind(data)}")
        data = dict(data)
        recipe = _recipe_from_dict(data.pop("recipe", {}) or {}, f"{where}: recipe")
        prepare = data.get("prepare", {}) or {}
        if isinstance(prepare, dict):
            data["prepare"] = {**prepare_defaults(recipe.model, recipe.preset), **prepare}
        extras = data.pop("extra_recipes", []) or []
        if not isinstance(extras, list):
            raise ConfigError(f"{where}: extra_recipes must be a list of recipes")
        extra = [_recipe_from_dict(r, f"{where}: extra_recipes[{i}]") for i, r in enumerate(extras)]
        config = _build(cls, data, where)
        config.recipe, config.extra_recipes = recipe, extra
        config.validate()
        return config

    def validate(self) -> None:
        if not self.seeds:
            raise ConfigError("seeds: at least one seed is needed")
        for seed in self.seeds:
            check_seed(seed, "seeds")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: {self.seeds} repeats a seed")
        if self.workers < 1:
            raise ConfigError(f"workers: {self.workers} is not a positive number")
        if self.executor not in EXECUTORS:
            raise ConfigError(
                f"executor: {self.executor!r} is unknown; choose one of {', '.join(EXECUTORS)}"
            )
        if self.executor_workers < 0:
            raise ConfigError(f"executor_workers: {self.executor_workers} is negative")
        main_input = get_model_entry(self.recipe.model).input_spec
        for recipe in self.recipes:
            if get_model_entry(recipe.model).input_spec != main_input:
                raise ConfigError(
                    f"extra_recipes: {recipe.model} takes other input than {self.recipe.model} "
                    "(ensembled models share one prepared input)"
                )
            check_recipe(recipe)
            _check_region_flip(recipe, self.prepare)


def check_recipe(recipe: Recipe) -> None:
    """Refuse a recipe value no training can use, naming the key, before anything is written."""
    r = recipe
    finite = all(
        math.isfinite(v)
        for v in (r.lr, r.weight_decay, r.label_smoothing, r.ema, r.sam, r.eps)
        if isinstance(v, int | float)
    )
    checks = [
        (finite, "lr, weight_decay, label_smoothing, ema and sam must be finite numbers"),
        (isinstance(r.lr, int | float) and r.lr > 0, f"lr must be > 0, got {r.lr}"),
        (r.epochs >= 1, f"epochs must be >= 1, got {r.epochs}"),
        (r.batch_size >= 1, f"batch_size must be >= 1, got {r.batch_size}"),
        (r.weight_decay >= 0, f"weight_decay must be >= 0, got {r.weight_decay}"),
        (0 <= r.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {r.label_smoothing}"),
        (0 <= r.ema < 1, f"ema must be in [0, 1), got {r.ema}"),
        (r.sam >= 0, f"sam must be >= 0, got {r.sam}"),
        (r.ensemble >= 1, f"ensemble must be >= 1, got {r.ensemble}"),
        (r.val_subjects >= 0, f"val_subjects must be >= 0, got {r.val_subjects}"),
        (r.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {r.warmup_epochs}"),
        (r.folds_per_batch >= 0, f"folds_per_batch must be >= 0, got {r.folds_per_batch}"),
        (r.max_steps >= 0, f"max_steps must be >= 0, got {r.max_steps}"),
        (r.eps > 0, f"eps must be > 0, got {r.eps}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"recipe {r.model}: {message}")
    _check_augment(r.model, r.augment)
    training = get_model_entry(r.model).training
    if training == "closed-form":  # settings that would silently not apply, refused up front
        from merkit.training.closed_form import check_recipe as check_closed_form

        check_closed_form(r)
    elif training == "ensemble":
        from merkit.training.ensemble import member_recipes

        member_recipes(r)
    if packs_targets(r.model) and r.augment != _NO_AUGMENT:
        raise ConfigError(
            f"recipe {r.model}: its input carries flow and landmark targets beside "
            "the frames, which the engine's augmentations would corrupt (the model crops "
            "its training clips itself): set augment.hflip false, augment.max_shift 0 "
            "and leave the other augment keys at 0"
        )


# No augmentation at all (the recipe of a model whose input packs targets beside the frames).
_NO_AUGMENT = AugmentConfig(hflip=False, max_shift=0)

# Allowed range of each numeric augmentation option, as (lowest, highest allowed).
_AUGMENT_RANGES = {
    "max_shift": (0, math.inf),
    "max_rotate": (0, 180),
    "max_scale": (0, 0.9),  # the zoom factor 1 - max_scale stays positive
    "contrast": (0, math.inf),
    "erase": (0, 1),  # a probability
    "noise_std": (0, math.inf),
    "mixup": (0, math.inf),
}


def _check_augment(model: str, augment: AugmentConfig) -> None:
    """One sentence naming the first augmentation option outside its range, before training
    would fail on it deep inside a fold."""
    for key, (low, high) in _AUGMENT_RANGES.items():
        value = getattr(augment, key)
        if not low <= value <= high:
            allowed = f">= {low}" if high == math.inf else f"between {low} and {high}"
            raise ConfigError(f"recipe {model}: augment.{key} must be {allowed}, got {value}")
    if augment.u_scaling not in U_SCALINGS:
        raise ConfigError(
            f"recipe {model}: augment.u_scaling must be one of {', '.join(U_SCALINGS)}, "
            f"got {augment.u_scaling!r}"
        )


def _check_region_flip(recipe: Recipe, prepare: PrepareConfig) -> None:
    """The flow-aware flip mirrors a whole face; on a region mosaic it is only right where the
    layout mirrors with the face (`RegionLayout.flips_with_face`)."""
    flips = recipe.augment.hflip or recipe.tta_flip
    if prepare.output == "regions" and flips and not region_layout(prepare.regions).flips_with_face:
        raise ConfigError(
            f"recipe {recipe.model}: the flow-aware flip (augment.hflip / tta_flip) does not "
            f"mirror the {prepare.regions!r} region mosaic with the face; set both to false, or "
            "use prepare.regions 'upright'"
        )


def prepare_defaults(model: str, preset: str = "default") -> dict[str, Any]:
    """Preparation keys implied by the model's declared input and the input its recipe `preset`
    was made for (a config may still override them)."""
    spec = get_model_entry(model).input_spec
    defaults: dict[str, Any] = {"output": spec.kind, "size": spec.size[0]}
    if spec.kind != "flow":
        defaults["color"] = spec.channels == 3
    if spec.kind == "sequence":
        defaults["frames"] = spec.frames
    return {**defaults, **preset_input(model, preset)}


def _recipe_from_dict(data: object, where: str) -> Recipe:
    """A recipe: the shipped default (or the `preset` named) of the model it names, with the
    given keys overriding it."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of recipe keys, got {_kind(data)}")
    preset = data.get("preset", "default")
    if not isinstance(preset, str):
        raise ConfigError(f"{where}.preset: expected a preset name, got {_kind(preset)}")
    base = default_recipe(str(data.get("model", DEFAULT_MODEL)), preset)
    return _build(Recipe, data, where, base=base)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML config as a plain dict (a run folder's config.yaml gives its `config` section)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    data = read_yaml(path)
    if "config" in data and "versions" in data:
        data = data["config"]  # a run folder's config.yaml: the resolved config is one section
    return data


def load_config(path: str | Path) -> ExperimentConfig:
    """Read a YAML experiment config (a run folder's config.yaml works too)."""
    return ExperimentConfig.from_dict(read_config_file(path), where=str(path))


def options_config(path: str | Path | None, overrides: dict[str, Any]) -> ExperimentConfig:
    """The experiment a command runs: its YAML file (if any) with the command's options set over
    it (`with_overrides`); refused without a dataset folder, which no default can supply."""
    raw = with_overrides(read_config_file(path) if path is not None else {}, overrides)
    experiment = ExperimentConfig.from_dict(raw, where=str(path) if path else "options")
    if not experiment.data.root:
        raise ConfigError("no dataset folder given: pass --root DIR (or data.root in --config)")
    return experiment


def with_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Copy of a plain config dict with dotted keys set (`{"recipe.epochs": 3}`); None skips.

    Setting `recipe.model` to another model than the file's drops the file's other recipe keys:
    a recipe tuned for one model says nothing about another, so the new model's shipped
    default recipe is used.
    """
    result = copy.deepcopy(data)
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, key = dotted.split(".")
        node = result
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key {name!r} must be a mapping to set {dotted}")
        if dotted == "recipe.model" and node.get("model", value) != value:
            node.clear()
        node[key] = value
    return result


def save_config(path: str | Path, config: ExperimentConfig) -> None:
    write_yaml_atomic(path, config.to_dict())


# ---- generic dataclass <-> dict ---------------------------------------------------------------


def _build(cls: type, data: object, where: str, base: Any = None) -> Any:
    """Instance of dataclass `cls` from `data`, starting from `base` (or the defaults)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(names))})"
        )
    obj = base if base is not None else cls()
    values = {k: _coerce(hints[k], v, getattr(obj, k), f"{where}.{k}") for k, v in data.items()}
    try:
        return dataclasses.replace(obj, **values)  # re-runs __post_init__ checks; frozen-safe
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(hint: Any, value: Any, current: Any, where: str) -> Any:
    """Check and convert one YAML value to the field's declared type."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, base=current)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, current, where) if len(inner) == 1 else value
    if hint is Any:
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {_kind(value)}")
        item = args[0] if args else Any
        items = [_coerce(item, v, None, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or hint) is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_kind(value)}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not _is_exact(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {_kind(value)} {value!r}")
    return value


def _is_exact(value: Any, hint: type) -> bool:
    return isinstance(value, hint) and not (hint is int and isinstance(value, bool))


def _kind(value: object) -> str:
    return type(value).__name__
