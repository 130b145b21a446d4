"""`merkit fit`: a final model trained on every sample of a dataset, saved as a checkpoint.

The model to ship after an experiment has measured the method under a subject-independent
protocol: nothing is held out, so its own accuracy is unknown by construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from merkit.inference.checkpoint import Checkpoint, CheckpointMeta, input_spec_of
from merkit.provenance import timestamp, versions
from merkit.training import base
from merkit.training.config import ExperimentConfig
from merkit.training.data import TrainingData
from merkit.training.devices import resolve_device


@dataclass
class FittedModel:
    """A final model's checkpoint and what preparation dropped or said on the way."""

    checkpoint: Checkpoint
    failed: list[tuple[str, str]]  # (sample uid, one-sentence reason) of the samples left out
    notes: list[str]


def fit_final(
    experiment: ExperimentConfig,
    *,
    out: str | Path | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, int], None] | None = None,
) -> FittedModel:
    """Train the experiment's recipe on ALL samples of its dataset (no held-out data, no
    validation subjects) and save the checkpoint to `out`.

    This is the model to ship after an experiment has measured the method under a
    subject-independent protocol; its own accuracy is unknown by construction. The experiment
    comes from `build_experiment` like every other (its protocol is not used; its first seed is).
    """
    recipe = dataclasses.replace(experiment.recipe, val_subjects=0)
    seed = experiment.seeds[0]
    resolve_device(experiment.device)  # a device this machine lacks: refused before any work
    data = TrainingData.from_config(experiment, progress)
    net = base.default_engine().fit(
        recipe,
        data.x,
        data.y,
        data.num_classes,
        seed,
        progress=on_epoch,
        placement=experiment.placement,
    )
    dataset, config = data.dataset, experiment.prepare
    meta = CheckpointMeta(
        model=recipe.model,
        model_kwargs=dict(recipe.model_kwargs),
        num_classes=data.num_classes,
        in_chans=int(data.x.shape[1]),
        class_names=tuple(dataset.class_names),
        input_spec=dataclasses.asdict(input_spec_of(config)),
        prepare=dataclasses.asdict(config),
        recipe=recipe.to_dict(),
        seed_members=recipe.seed_members,
        dataset=experiment.data.name,
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
    return FittedModel(checkpoint, list(data.failed), list(data.notes))
