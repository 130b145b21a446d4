"""`merkit fit`: a final model trained on every sample of a dataset, saved as a checkpoint.

The model to ship after an experiment has measured the method under a subject-independent
protocol: nothing is held out, so its own accuracy is unknown by construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from merkit.inference.checkpoint import Checkpoint, CheckpointMeta, input_spec_of
from merkit.preprocess.pipeline import PrepareConfig, default_workers
from merkit.provenance import timestamp, versions
from merkit.training import base
from merkit.training.config import DataConfig, ExperimentConfig, prepare_defaults
from merkit.training.data import TrainingData
from merkit.training.recipe import Recipe, default_recipe


def fit_final(
    dataset_name: str,
    root: str | Path,
    model: str,
    recipe: Recipe | None = None,
    prepare_config: PrepareConfig | None = None,
    seed: int = 0,
    taxonomy: str | None = None,
    *,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, int], None] | None = None,
) -> Checkpoint:
    """Train `model` on ALL samples of a dataset (no held-out data) and save it to `out`.

    This is the model to ship after an experiment has measured the method under LOSO; its own
    accuracy is unknown by construction. `recipe` defaults to the model's shipped recipe, and
    `prepare_config` to the preprocessing of the model's declared input.
    """
    recipe = dataclasses.replace(recipe or default_recipe(model), model=model, val_subjects=0)
    config = prepare_config or PrepareConfig(**prepare_defaults(model, recipe.preset))
    experiment = ExperimentConfig(
        data=DataConfig(name=dataset_name, root=str(root), taxonomy=taxonomy),
        prepare=config,
        recipe=recipe,
        seeds=[seed],
        workers=workers or default_workers(),
        cache_dir=str(cache_dir) if cache_dir is not None else None,
    )
    data = TrainingData.from_config(experiment, progress)
    net = base.default_engine().fit(
        recipe, data.x, data.y, data.num_classes, seed, progress=on_epoch
    )
    dataset = data.dataset
    meta = CheckpointMeta(
        model=model,
        model_kwargs=dict(recipe.model_kwargs),
        num_classes=data.num_classes,
        in_chans=int(data.x.shape[1]),
        class_names=tuple(dataset.class_names),
        input_spec=dataclasses.asdict(input_spec_of(config)),
        prepare=dataclasses.asdict(config),
        recipe=recipe.to_dict(),
        ensemble=recipe.ensemble,
        dataset=dataset_name,
        taxonomy=dataset.taxonomy,
        data_fingerprint=dataset.fingerprint(),
        n_samples=len(data.samples),
        failed=[{"sample": uid, "reason": reason} for uid, reason in data.failed],
        seed=seed,
        trained_at=timestamp(),
        versions=versions(),
    )
    meta = CheckpointMeta.from_dict(meta.to_dict())  # JSON-normalised, as it will read back
    checkpoint = Checkpoint(net.eval(), meta)
    if out is not None:
        checkpoint.save(out)
    return checkpoint
