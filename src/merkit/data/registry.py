"""Loaders by name, so the CLI and configs can say `--data casme2 --root DIR`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from merkit.data.base import SampleSet
from merkit.errors import ConfigError, DataLayoutError

Loader = Callable[..., SampleSet]


@dataclass(frozen=True)
class DatasetInfo:
    """A supported dataset: its loader and the on-disk layout it expects."""

    name: str
    title: str
    layout: str  # the files the loader reads, as the release lays them out
    taxonomies: tuple[str, ...]
    loader: Loader


_DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(
    name: str, title: str, layout: str, taxonomies: tuple[str, ...]
) -> Callable[[Loader], Loader]:
    """Decorator that registers a loader function `f(root, taxonomy=..., **options)`; a second
    loader under a registered name is refused (it would silently replace the first)."""

    def wrap(fn: Loader) -> Loader:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = DatasetInfo(name, title, layout, taxonomies, fn)
        return fn

    return wrap


def _ensure_loaded() -> None:
    # Importing the loaders package runs every @register_dataset.
    import merkit.data.loaders  # noqa: F401


def list_datasets() -> list[DatasetInfo]:
    _ensure_loaded()
    return list(_DATASETS.values())


def get_dataset_info(name: str) -> DatasetInfo:
    _ensure_loaded()
    if name not in _DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(_DATASETS)}")
    return _DATASETS[name]


def load_dataset(name: str, root: str | Path, taxonomy: str | None = None, **options) -> SampleSet:
    """Load dataset `name` from `root`; `taxonomy` defaults to the loader's own default."""
    info = get_dataset_info(name)
    root = Path(root)
    if not root.exists():
        raise DataLayoutError(f"{root}: dataset root does not exist")
    if taxonomy is not None:
        options["taxonomy"] = taxonomy
    return info.loader(root, **options)
