"""An experiment as one plain, YAML-round-trippable config: data, preparation, protocol, recipe.

A config file only needs the keys it changes: `recipe` keys override the shipped recipe of the
model it names (`default_recipe(recipe.model, recipe.preset)`: `DEFAULT_MODEL` when it names
none, the preset "default" unless it names another, e.g. "paper"), `prepare` keys override what
the model's input and that preset imply (its descriptor's `prepare_keys`), everything else
overrides the dataclass defaults. Unknown keys are errors, so a typo never silently falls back to
a default. `build_experiment` is the one way commands make an experiment; it validates it once
(`merkit.training.validation`).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from merkit.errors import ConfigError
from merkit.io import plain, read_yaml
from merkit.models.registry import get_descriptor
from merkit.preprocess.config import PrepareConfig
from merkit.training.devices import Placement
from merkit.training.recipe import DEFAULT_MODEL, Recipe, default_recipe
from merkit.training.validation import validate_experiment

# Keys that change how fast a run goes, not what it computes: ignored when a run folder is
# checked against the config that resumes it.
RUNTIME_KEYS = (
    "workers",
    "cache_dir",
    "executor",
    "executor_workers",
    "ray_address",
    "device",
    "deterministic",
    "gpus_per_job",
)


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

    `extra_recipes` are averaged with the main recipe: their per-fold class probabilities are
    averaged with the main recipe's. Each seed in `seeds` repeats the whole
    protocol; multi-seed runs report every seed and the mean and std over seeds.
    """

    data: DataConfig = field(default_factory=DataConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    recipe: Recipe = field(default_factory=lambda: default_recipe(DEFAULT_MODEL))
    extra_recipes: list[Recipe] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    workers: int = 1
    cache_dir: str | None = None  # preprocessing cache; None: no cache
    executor: str = "local"  # where training jobs run: local, processes or ray
    executor_workers: int = 0  # parallel training jobs; 0: one per core (local: always 1)
    ray_address: str | None = None  # "auto" or a cluster address; None: start a local Ray
    device: str = "auto"  # auto (CUDA when there is one, else CPU), cpu, cuda, cuda:N, mps
    precision: str = "fp32"  # fp32, bf16 or fp16 (autocast; fp16 scales the loss)
    deterministic: bool = False  # on a GPU, deterministic kernels (always on the CPU)
    gpus_per_job: float = 1.0  # with executor ray on a GPU: GPUs per job (fractions share one)

    @property
    def placement(self) -> Placement:
        """Where and how the engines compute (the device is resolved where the work runs)."""
        return Placement(self.device, self.precision, self.deterministic)

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
            implied = get_descriptor(recipe.model).prepare_keys(recipe.preset)
            data["prepare"] = {**implied, **prepare}
        extras = data.pop("extra_recipes", []) or []
        if not isinstance(extras, list):
            raise ConfigError(f"{where}: extra_recipes must be a list of recipes")
        extra = [_recipe_from_dict(r, f"{where}: extra_recipes[{i}]") for i, r in enumerate(extras)]
        config = _build(cls, data, where)
        config.recipe, config.extra_recipes = recipe, extra
        validate_experiment(config)
        return config


def _recipe_from_dict(data: object, where: str) -> Recipe:
    """A recipe: the shipped default (or the `preset` named) of the model it names, with the
    given keys overriding it."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of recipe keys, got {_kind(data)}")
    preset = data.get("preset", "default")
    if not isinstance(preset, str):
        raise ConfigError(f"{where}.preset: expected a preset name, got {_kind(preset)}")
    model = data.get("model", DEFAULT_MODEL)
    if not isinstance(model, str):
        raise ConfigError(f"{where}.model: expected a model name, got {_kind(model)}")
    base = default_recipe(model, preset)
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


def build_experiment(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> ExperimentConfig:
    """The one way an experiment is made (train, audit, fit, evaluate, demo): its YAML file (if
    any) with the command's options set over it key by key (`with_overrides`), every default
    taken from the model's descriptor, and validated once, before any data are read; refused
    without a dataset folder, which no default can supply."""
    raw = with_overrides(read_config_file(path) if path is not None else {}, overrides or {})
    experiment = ExperimentConfig.from_dict(raw, where=str(path) if path else "options")
    if not experiment.data.root:
        raise ConfigError("no dataset folder given: pass --root DIR (or data.root in --config)")
    return experiment


def with_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Copy of a plain config dict with dotted keys set (`{"recipe.epochs": 3}`); None skips.

    Every key is set on its own: naming another model keeps the file's other recipe keys, which
    then apply over that model's shipped recipe (and are refused by validation, naming the key,
    where they do not fit it).
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
        node[key] = value
    return result


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
