"""Experiments for tests, made the one way commands make them (`build_experiment`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from merkit.preprocess.config import PrepareConfig
from merkit.training.config import ExperimentConfig, build_experiment
from merkit.training.recipe import Recipe


def experiment(
    data: str,
    root: Path,
    recipe: Recipe,
    prepare: PrepareConfig | None = None,
    seed: int = 0,
    **keys: object,
) -> ExperimentConfig:
    """`recipe` on dataset `data` in `root` (preparation: `prepare`, else what the model
    implies), validated as `merkit train` and `merkit fit` validate theirs; `keys` are further
    dotted config keys (e.g. `{"data.taxonomy": "5class"}` as `**{...}`)."""
    overrides: dict[str, object] = {
        "data.name": data,
        "data.root": str(root),
        "recipe": recipe.to_dict(),
        "seeds": [seed],
        **keys,
    }
    if prepare is not None:
        overrides["prepare"] = dataclasses.asdict(prepare)
    return build_experiment(overrides=overrides)
