"""The torch engine: fit a recipe on many folds at once and return their test probabilities.

Public API (stable; the experiment runner builds on it through the `Engine` contract of
`merkit.training.base`):

- `fit_predict(recipe, x, y, folds, num_classes, seed, *, groups, progress, workers, output)`
  per fold, the test samples' class probabilities (averaged over `recipe.seed_members` members);
  `output="history"` adds the per-epoch training curves (a `FoldResult`), `output="epochs"`
  gives the probabilities after every epoch (the leakage audit's "oracle" figure only).
  `workers` > 1 spreads buckets of folds over single-threaded processes (a calling script
  needs the usual `if __name__ == "__main__":` guard).
- `fit(recipe, x, y, num_classes, seed) -> nn.Module` one final model on all the data.
- `TorchEngine` the same two as an `Engine` object, which executors send to their workers.

This module plans: it checks the inputs, cuts the folds into (fold, member) jobs with their
seeds, and groups the jobs into buckets that train side by side (`merkit.training.trainer`).

Why it is honest: a job's model sees only its training indices (minus `val_subjects` validation
subjects when asked); the held-out fold is evaluated, never used to choose anything. With
validation subjects, the epoch with the lowest validation loss gives the test probabilities.

Why it is reproducible: each job's seed depends on (seed, member, test indices) only, so a fold
gives the same result whether it is trained alone, in a bucket of folds, or after a resume.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator, Sequence

import numpy as np
from torch import nn

from merkit.errors import ConfigError, TrainingDiverged
from merkit.evaluation.splitters import Fold
from merkit.models import get_descriptor
from merkit.models.blocks import ProbabilityAverage
from merkit.models.inputs import PROBE_CLASSES, activation_floats
from merkit.training.base import Output, Progress, check_output
from merkit.training.devices import CPU, Placement, determinism, resolve_device
from merkit.training.recipe import Recipe
from merkit.training.results import FoldResult, mean_history
from merkit.training.trainer import (
    BucketTrainer,
    Counter,
    FoldMember,
    Trained,
    epochs_run,
    steps_per_epoch,
    train_bucket,
)
from merkit.workers import WorkerPool, report

# Activation memory the engine allows one batch of grouped jobs (floats), when it picks the size.
_AUTO_BUDGET_FLOATS = 150_000_000


def fit_predict(
    recipe: Recipe,
    x: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    num_classes: int,
    seed: int = 0,
    *,
    groups: np.ndarray | Sequence[str] | None = None,
    progress: Progress | None = None,
    workers: int = 1,
    output: Output = "probs",
    placement: Placement = CPU,
) -> list[np.ndarray] | list[FoldResult]:
    """Per fold: "probs" (n_test, K) test probabilities; "history" a `FoldResult` of those and
    the fold's per-epoch curves (`train_loss`, `train_accuracy`, and `val_loss`,
    `val_accuracy` with validation subjects), averaged over seed members; "epochs"
    (epochs, n_test, K).

    `groups` (subject key per sample) is needed only when `recipe.val_subjects` > 0.
    `workers` > 1 trains buckets of folds in that many single-threaded CPU processes; the
    probabilities do not depend on it (up to float rounding). `placement`: device, precision
    and GPU determinism (`merkit.training.devices`).
    """
    check_output(output)
    y = np.asarray(y, dtype=np.int64)
    record = output == "epochs"
    results = _run(
        recipe, x, y, folds, num_classes, seed, groups, progress, record, workers, placement
    )
    if output == "history":
        return [FoldResult(curve[-1], history) for curve, history in results]
    return [curve if record else curve[-1] for curve, _ in results]


def fit(
    recipe: Recipe,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    seed: int = 0,
    *,
    progress: Progress | None = None,
    placement: Placement = CPU,
) -> nn.Module:
    """Train on all samples; an ordinary model (or a probability average of its seed members),
    on `placement`'s device."""
    if recipe.val_subjects:
        raise ConfigError("fit() trains on all samples; set val_subjects to 0 for a final model")
    y = np.asarray(y, dtype=np.int64)
    fold = (np.arange(len(y)), np.zeros(0, dtype=np.int64))
    jobs = plan_members(recipe, [fold], seed, None)
    models: list[nn.Module] = []
    _check_inputs(recipe, x, y, [fold], num_classes)
    counter = Counter(progress, _job_epochs(recipe, jobs))
    with determinism(resolve_device(placement.device), placement.deterministic):
        for bucket in _buckets(recipe, jobs, x.shape):
            trainer = BucketTrainer(recipe, bucket, x, y, num_classes, placement)
            trainer.train(counter)
            models.extend(trainer.single_models())
    if len(models) == 1:
        return models[0].eval()
    return ProbabilityAverage(models).eval()


class TorchEngine:
    """`fit_predict` and `fit` as an `Engine` object (what the runner and executors pass on)."""

    fit_predict = staticmethod(fit_predict)
    fit = staticmethod(fit)


def job_seed(seed: int, member: int, test_idx: np.ndarray) -> int:
    """A job's seed: depends on the run seed, the member and WHICH samples are held out only."""
    key = zlib.crc32(np.asarray(test_idx, dtype=np.int64).tobytes())
    return int(np.random.SeedSequence([seed, member, key]).generate_state(1)[0])


def _run(
    recipe: Recipe,
    x: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    num_classes: int,
    seed: int,
    groups: np.ndarray | Sequence[str] | None,
    progress: Progress | None,
    record: bool,
    workers: int,
    placement: Placement,
) -> list[Trained]:
    """Per fold, its test-probability curve (epochs or 1, n_test, K) and its history, each the
    mean over the fold's seed members."""
    _check_inputs(recipe, x, y, folds, num_classes)
    jobs = plan_members(recipe, folds, seed, groups)
    counter = Counter(progress, _job_epochs(recipe, jobs))
    device = resolve_device(placement.device)
    placement = placement.on(str(device))
    workers = max(workers, 1) if device.type == "cpu" else 1  # an accelerator: this process
    buckets = list(_buckets(recipe, jobs, x.shape, workers))
    try:
        if workers > 1 and len(buckets) > 1:
            results = _train_in_processes(
                recipe, buckets, x, y, num_classes, record, workers, counter, placement
            )
        else:
            results = [
                train_bucket(recipe, b, x, y, num_classes, record, counter, placement)
                for b in buckets
            ]
    except TrainingDiverged as exc:
        if not isinstance(exc.fold, int) or groups is None:
            raise
        raise TrainingDiverged(
            exc.model, fold_label(folds[exc.fold][1], groups), exc.epoch, exc.lr
        ) from None
    trained = {
        (job.fold, job.member): outcome
        for bucket, result in zip(buckets, results, strict=True)
        for job, outcome in zip(bucket, result, strict=True)
    }
    members = range(recipe.seed_members)
    return [
        (
            np.mean([trained[f, m][0] for m in members], axis=0),
            mean_history([trained[f, m][1] for m in members]),
        )
        for f in range(len(folds))
    ]


def fold_label(test: np.ndarray, groups: np.ndarray | Sequence[str]) -> str:
    """A fold named by its test subjects, as a user finds it in the run folder."""
    subjects = sorted({str(groups[i]) for i in test})
    if len(subjects) == 1:
        return f"the fold testing subject {subjects[0]}"
    more = f" and {len(subjects) - 3} more" if len(subjects) > 3 else ""
    return f"the fold testing subjects {', '.join(subjects[:3])}{more}"


class _ReportingCounter(Counter):
    """A pool worker's counter: finished job-epochs go to the driver's counter, and a stopped
    driver ends the training at the next epoch."""

    def add(self, n: int) -> None:
        report(n)


def _train_in_worker(
    recipe: Recipe,
    bucket: list[FoldMember],
    x: np.ndarray,
    y: np.ndarray,
    k: int,
    record: bool,
    placement: Placement,
) -> list[Trained]:
    return train_bucket(recipe, bucket, x, y, k, record, _ReportingCounter(None, 0), placement)


def _train_in_processes(
    recipe: Recipe,
    buckets: list[list[FoldMember]],
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    record: bool,
    workers: int,
    counter: Counter,
    placement: Placement,
) -> list[list[Trained]]:
    """Buckets spread over `workers` single-threaded CPU processes (robust on a shared CPU)."""
    results: list[list[Trained]] = [[] for _ in buckets]
    tasks = [(recipe, b, x, y, num_classes, record, placement) for b in buckets]
    with WorkerPool(workers, threads=1) as pool:
        for index, future in pool.run(_train_in_worker, tasks, on_message=counter.add):
            results[index] = future.result()
    return results


def _check_inputs(
    recipe: Recipe, x: np.ndarray, y: np.ndarray, folds: Sequence[Fold], num_classes: int
) -> None:
    """Refuse arrays or folds that no caller should hand over (ValueError: the recipe was
    validated with its experiment, and the runner checks a protocol's folds)."""
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"expected x of shape (N, C, H, W) with N = {len(y)}, got {x.shape}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    for i, (train, test) in enumerate(folds):
        if len(train) == 0:
            raise ValueError(f"fold {i} has no training samples")
        if np.intersect1d(train, test).size:
            raise ValueError(f"fold {i} puts the same sample in its training and test sides")


def plan_members(
    recipe: Recipe,
    folds: Sequence[Fold],
    seed: int,
    groups: np.ndarray | Sequence[str] | None,
) -> list[FoldMember]:
    """One job per (fold, seed member), with its seed and its validation subjects."""
    if recipe.val_subjects and groups is None:
        raise ConfigError("recipe.val_subjects > 0 needs the subject of every sample (groups)")
    jobs = []
    for f, (train, test) in enumerate(folds):
        train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
        for member in range(recipe.seed_members):
            s = job_seed(seed, member, test)
            fit_idx, val_idx = train, np.zeros(0, dtype=np.int64)
            if recipe.val_subjects:
                fit_idx, val_idx = _carve_validation(train, np.asarray(groups), recipe, s, f)
            jobs.append(FoldMember(f, member, fit_idx, test, val_idx, s))
    return jobs


def _carve_validation(
    train: np.ndarray, groups: np.ndarray, recipe: Recipe, seed: int, fold: int
) -> tuple[np.ndarray, np.ndarray]:
    """Move `val_subjects` randomly chosen training subjects to a validation side."""
    subjects = np.array(sorted(set(groups[train].tolist())))
    if len(subjects) <= recipe.val_subjects:
        raise ConfigError(
            f"fold {fold} has {len(subjects)} training subjects, too few to hold out "
            f"{recipe.val_subjects} for validation"
        )
    chosen = np.random.default_rng(seed).choice(subjects, recipe.val_subjects, replace=False)
    is_val = np.isin(groups[train], chosen)
    return train[~is_val], train[is_val]


def _job_epochs(recipe: Recipe, jobs: Sequence[FoldMember]) -> int:
    """Job-epochs of `jobs` in all (the progress total)."""
    return sum(epochs_run(recipe, steps_per_epoch(j, recipe.batch_size)) for j in jobs)


def _buckets(
    recipe: Recipe, jobs: list[FoldMember], shape: tuple[int, ...], workers: int = 1
) -> Iterator[list[FoldMember]]:
    """Group jobs that can train side by side (same steps per epoch), in bounded numbers,
    and in at least `workers` buckets when the engine picks the size."""
    if not get_descriptor(recipe.model).groupable:
        size = 1
    elif recipe.folds_per_batch > 0:
        size = recipe.folds_per_batch
    else:
        size = _auto_bucket_size(recipe, shape)
    by_steps: dict[tuple[int, int], list[FoldMember]] = {}
    for job in jobs:
        batch = min(recipe.batch_size, len(job.train))
        by_steps.setdefault((steps_per_epoch(job, recipe.batch_size), batch), []).append(job)
    for same in by_steps.values():
        if recipe.folds_per_batch <= 0:
            size = min(size, math.ceil(len(same) / workers))
        for start in range(0, len(same), size):
            yield same[start : start + size]


def _auto_bucket_size(recipe: Recipe, shape: tuple[int, ...]) -> int:
    """How many copies fit the activation budget (counted by the `meta`-device probe)."""
    options = json.dumps(recipe.model_kwargs, sort_keys=True)
    per_copy = activation_floats(recipe.model, tuple(shape[1:]), PROBE_CLASSES, options)
    return int(max(1, min(64, _AUTO_BUDGET_FLOATS // (per_copy * recipe.batch_size))))
