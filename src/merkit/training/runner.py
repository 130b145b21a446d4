"""Run an experiment: dataset -> preparation -> protocol folds -> engine -> pooled predictions.

The folds are cut into (seed, recipe, chunk of folds) jobs that an executor runs (in this process,
a local process pool, or Ray: `merkit.training.executors`). The driver saves each fold as soon as
its chunk's results arrive, so an interrupted run resumes where it stopped, whatever executed it,
and never recomputes a finished fold. The run folder (`merkit.evaluation.run_folder`) says where
everything goes and belongs to one config: running a different config into it is refused unless
asked to overwrite.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import merkit
from merkit.errors import ConfigError
from merkit.evaluation.overlap import OverlapReport, subject_overlap
from merkit.evaluation.report import render_run
from merkit.evaluation.run_folder import RunFolder
from merkit.evaluation.run_meta import DataInfo, ProtocolInfo, RunInfo, RunMeta
from merkit.evaluation.splitters import Fold, Splitter, make_splitter
from merkit.models import get_descriptor
from merkit.provenance import timestamp, versions
from merkit.training import base
from merkit.training.base import Engine
from merkit.training.config import ExperimentConfig
from merkit.training.data import TrainingData, load_data
from merkit.training.devices import describe, resolve_device
from merkit.training.executors import Executor, SharedInputs, TrainJob, make_executor
from merkit.training.recipe import Recipe
from merkit.training.results import FoldResult, History, mean_history

# Folds handed to the engine per call when the recipe does not say, for models the engine trains
# side by side (its grouped buckets): enough to batch them well (12 and 24 both give the 58-fold
# cabm LOSO in ~215 s), few enough that a run saves its folds every minute or so, since a resume
# loses the unfinished calls. Other models train one fold at a time, so each call is one fold.
DEFAULT_FOLDS_PER_CALL = 12


@dataclass
class RunResult:
    """What a run produced (all of it is also on disk in `out_dir`)."""

    out_dir: Path
    metrics: dict[str, Any]
    seconds: float
    folds_computed: int
    folds_loaded: int
    n_samples: int
    n_folds: int  # folds of one seed
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class FoldTask:
    """One fold of one seed: its name (which names its files) and its index arrays."""

    seed: int
    name: str
    train: np.ndarray
    test: np.ndarray


# ---- the protocol ------------------------------------------------------------------------------


def build_splitter(config: ExperimentConfig) -> Splitter:
    """The protocol's splitter; a subject-leaking one only when `allow_leakage` is set."""
    splitter = make_splitter(config.protocol.name, **config.protocol.options)
    if not splitter.subject_independent and not config.protocol.allow_leakage:
        raise ConfigError(
            f"protocol {splitter.describe()} puts one subject in both train and test; pass "
            "--allow-leakage (protocol.allow_leakage: true) to run it anyway"
        )
    return splitter


def _recorded_identity(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config's identity, normalised through the current config classes."""
    return ExperimentConfig.from_dict(config).identity()


# ---- metadata --------------------------------------------------------------------------------


def _git_commit() -> str | None:
    """Commit of the merkit source tree, when it is a git checkout."""
    source = Path(merkit.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _run_meta(
    config: ExperimentConfig,
    data: TrainingData,
    splitter: Splitter,
    overlap: OverlapReport,
    out_dir: Path,
    previous: RunMeta | None,
    executor: Executor,
    device: Any,
) -> RunMeta:
    dataset = data.dataset
    leaking = sorted({s for f in overlap.leaking_folds for s in f.shared_subjects})
    started = (previous.run.started_at if previous else None) or timestamp()
    return RunMeta(
        config=config.to_dict(),
        run=RunInfo(name=out_dir.name, started_at=started, finished_at=None),
        data=DataInfo(
            name=dataset.name,
            root=str(dataset.root),
            taxonomy=dataset.taxonomy,
            class_names=data.class_names,
            fingerprint=dataset.fingerprint(),
            n_samples=len(dataset),
            n_used=len(data.samples),
            n_subjects=data.n_subjects,
            skipped_by_loader=len(dataset.skipped),
            notes=[*dataset.notes, *data.notes],  # the loader's, then e.g. how apexes were spotted
            failed=[{"sample": uid, "reason": reason} for uid, reason in data.failed],
            landmarks=data.landmarks,
        ),
        protocol=ProtocolInfo(
            description=splitter.describe(),
            subject_independent=splitter.subject_independent,
            n_folds=len(overlap.folds),
            leakage=overlap.summary(),
            leaking_subjects=leaking,
        ),
        determinism={
            "device": describe(device, config.precision, config.deterministic),
            **executor.determinism().to_dict(),
            # the CPU always trains deterministically; a GPU only with --deterministic
            "torch_deterministic_algorithms": device.type == "cpu" or config.deterministic,
            "seeds": list(config.seeds),
            "job_seeds": "engine.job_seed(seed, member, test indices) per (fold, member) job",
        },
        versions=versions(),
        git_commit=_git_commit(),
    )


# ---- folds -----------------------------------------------------------------------------------


def fold_tasks(data: TrainingData, splitter: Splitter, seed: int) -> list[FoldTask]:
    """The folds of one seed, checked to test every sample exactly once (pooling needs it) and
    to train every fold on other samples than it tests."""
    splits: list[Fold] = list(splitter.split(data.samples))
    names = splitter.fold_names(data.samples)
    tested = np.concatenate([test for _, test in splits]) if splits else np.zeros(0, int)
    if sorted(tested.tolist()) != list(range(len(data.samples))):
        raise ConfigError(f"protocol {splitter.describe()} does not test every sample exactly once")
    for name, (train, test) in zip(names, splits, strict=True):
        if len(train) == 0:
            raise ConfigError(
                f"protocol {splitter.describe()}: fold {name} leaves no sample to train on "
                f"(the data hold {data.n_subjects} subject(s))"
            )
        if np.intersect1d(train, test).size:
            raise ConfigError(
                f"protocol {splitter.describe()}: fold {name} puts a sample in both its "
                "training and its test side"
            )
    return [
        FoldTask(seed, name, np.asarray(train), np.asarray(test))
        for name, (train, test) in zip(names, splits, strict=True)
    ]


def _load_finished(
    folder: RunFolder, tasks: dict[int, list[FoldTask]], data: TrainingData
) -> tuple[dict[int, np.ndarray], list[History], dict[int, list[FoldTask | None]]]:
    """Per seed: probabilities of the finished folds, their curves, and the folds to run
    (None where a fold is finished, so chunks keep their positions)."""
    seed_probs, todo, histories = {}, {}, []
    for seed, seed_tasks in tasks.items():
        probs = np.zeros((len(data.samples), data.num_classes), dtype=np.float64)
        todo[seed] = []
        for task in seed_tasks:
            done = folder.load_fold(seed, task.name, data.keys(task.test), data.class_names)
            if done is not None:
                probs[task.test] = done[0]
                histories.append(done[1])
            todo[seed].append(task if done is None else None)
        seed_probs[seed] = probs
    return seed_probs, histories, todo


def folds_per_call(recipes: Sequence[Recipe]) -> int:
    """How many folds each engine call trains: the first recipe's `folds_per_batch`, else
    DEFAULT_FOLDS_PER_CALL when some recipe (or a member of an average) can batch folds, else
    one."""
    if recipes[0].folds_per_batch:
        return recipes[0].folds_per_batch
    descriptors = [get_descriptor(r.model) for r in recipes]
    names = [name for d in descriptors for name in (d.name, *d.members)]  # an average's members
    if any(get_descriptor(name).groupable for name in names):
        return DEFAULT_FOLDS_PER_CALL
    return 1


def fixed_chunks(slots: Sequence[FoldTask | None], size: int) -> list[list[FoldTask]]:
    """The unfinished folds (finished ones are None), cut at fixed positions of the fold list.

    Fixed cuts make a chunk the same set of folds whatever the executor and after a resume (a
    fold's result depends on its batch companions at float-rounding level).
    """
    chunks = []
    for start in range(0, len(slots), size):
        chunk = [t for t in slots[start : start + size] if t is not None]
        if chunk:
            chunks.append(chunk)
    return chunks


class ChunkPlan:
    """One job per (chunk, recipe); a chunk is finished when all its recipes are."""

    def __init__(self, chunks: list[list[FoldTask]], recipes: Sequence[Recipe]) -> None:
        self.chunks, self.recipes = chunks, list(recipes)

    def jobs(self) -> list[TrainJob]:
        return [
            TrainJob(chunk[0].seed, recipe, tuple((t.train, t.test) for t in chunk))
            for chunk in self.chunks
            for recipe in self.recipes
        ]

    def labels(self) -> list[str]:
        """How each recipe's curves are named when several are averaged: its model (+ #i if
        repeated)."""
        models = [r.model for r in self.recipes]
        return [m if models.count(m) == 1 else f"{m}#{i}" for i, m in enumerate(models)]

    def run(
        self, executor: Executor, shared: SharedInputs, progress: Callable[..., None] | None
    ) -> Iterator[tuple[list[FoldTask], list[FoldResult]]]:
        """Yield each chunk with its folds' results: probabilities averaged over the recipes
        (averaged), curves kept per recipe (prefixed by its label when there are several)."""
        n = len(self.recipes)
        labels = self.labels()
        arrived: dict[int, dict[int, list[FoldResult]]] = {}
        for index, results in executor.run(shared, self.jobs(), progress):
            c, r = divmod(index, n)
            arrived.setdefault(c, {})[r] = results
            if len(arrived[c]) != n:
                continue
            parts = arrived.pop(c)
            merged = []
            for f in range(len(self.chunks[c])):
                total = parts[0][f].probs
                for k in range(1, n):  # recipe order, as a sequential run adds them
                    total = total + parts[k][f].probs
                history = {
                    (name if n == 1 else f"{labels[k]} {name}"): values
                    for k in range(n)
                    for name, values in parts[k][f].history.items()
                }
                merged.append(FoldResult(total / n, history))
            yield self.chunks[c], merged


# ---- progress --------------------------------------------------------------------------------


class RunProgress:
    """A rich progress display over folds, with a second bar fed by the engine's callback."""

    def __init__(self, enabled: bool, total_folds: int) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True, markup=False),
            disable=not enabled,
        )
        self._folds = self._progress.add_task("folds", total=total_folds)
        self._epochs = self._progress.add_task("fold-epochs", total=None, visible=False)

    def folds_done(self, n: int) -> None:
        self._progress.advance(self._folds, n)

    def epoch(self, done: int, total: int, **_: Any) -> None:
        """Engine callback: `done` of `total` steps of the current engine call."""
        self._progress.update(self._epochs, completed=done, total=total, visible=True)

    @contextmanager
    def running(self) -> Iterator[RunProgress]:
        with self._progress:
            yield self


# ---- the experiment --------------------------------------------------------------------------


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    engine: Engine | None = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> RunResult:
    """Run `config` into `out_dir` (resuming finished folds) and write its figures and report."""
    start = datetime.now(UTC)
    out_dir = Path(out_dir)
    folder = RunFolder(out_dir)
    engine = engine or base.default_engine()
    device = resolve_device(config.device)  # a device this machine lacks: refused before any work
    dataset = load_data(config)
    splitter = build_splitter(config)
    previous = folder.claim(
        config.identity(),
        dataset.fingerprint(),
        _recorded_identity,
        resume=resume,
        overwrite=overwrite,
    )
    data = TrainingData.prepare(config, dataset, progress)
    overlap = subject_overlap(data.samples, splitter)

    per_call = folds_per_call(config.recipes)
    tasks = {seed: fold_tasks(data, splitter, seed) for seed in config.seeds}
    shared = SharedInputs(engine, data.x, data.y, data.groups, data.num_classes, config.placement)
    executor_options = (config.executor_workers, config.ray_address, config.gpus_per_job)
    with (
        make_executor(config.executor, *executor_options) as executor,
        RunProgress(progress, sum(len(t) for t in tasks.values())).running() as bar,
    ):
        meta = _run_meta(config, data, splitter, overlap, out_dir, previous, executor, device)
        folder.write_meta(meta)
        seed_probs, histories, todo = _load_finished(folder, tasks, data)
        loaded = len(histories)
        bar.folds_done(loaded)
        chunks = [c for slots in todo.values() for c in fixed_chunks(slots, per_call)]
        plan = ChunkPlan(chunks, config.recipes)
        for chunk, results in plan.run(executor, shared, bar.epoch):
            for task, result in zip(chunk, results, strict=True):
                table = data.predictions(result.probs, task.test)
                folder.save_fold(task.seed, task.name, table, result.history)
                seed_probs[task.seed][task.test] = result.probs
                histories.append(result.history)
            bar.folds_done(len(chunk))
    computed = sum(len(c) for c in plan.chunks)

    mean = np.mean(list(seed_probs.values()), axis=0)
    per_seed = {seed: data.predictions(probs) for seed, probs in seed_probs.items()}
    folder.write_predictions(data.predictions(mean), per_seed)
    folder.write_curves(mean_history(histories))
    meta.run.finished_at = timestamp()
    folder.write_meta(meta)
    metrics = render_run(out_dir)
    return RunResult(
        out_dir=out_dir,
        metrics=metrics,
        seconds=(datetime.now(UTC) - start).total_seconds(),
        folds_computed=computed,
        folds_loaded=loaded,
        n_samples=len(data.samples),
        n_folds=len(overlap.folds),
        failed=list(data.failed),
    )
