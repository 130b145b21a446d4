"""Run an experiment: dataset -> preparation -> protocol folds -> engine -> pooled predictions.

The folds are cut into (seed, recipe, chunk of folds) jobs that an executor runs (in this process,
a local process pool, or Ray: `merkit.training.executors`). The driver saves each fold as soon as
its chunk's results arrive (`folds/seed{S}/{fold}.csv`, atomically), so an interrupted run
resumes where it stopped, whatever executed it, and never recomputes a finished fold. A run
folder belongs to one config: running a different config into it is refused unless asked to
overwrite.

Layout of a run folder:
    config.yaml            resolved config + data fingerprint, protocol, versions, git, times
    folds/seed{S}/*.csv    each fold's test predictions with class probabilities
    folds/seed{S}/*.curves.json  each fold's per-epoch training curves (written before its csv)
    curves.json            the curves averaged over folds and seeds (drawn by the report)
    predictions.csv        pooled predictions (multi-seed: probabilities averaged over seeds)
    predictions_seed{S}.csv  each seed's pooled predictions (multi-seed runs only)
    metrics.json, confusion.png, report.md   derived by merkit.evaluation.report
"""

from __future__ import annotations

import json
import shutil
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
from merkit.data.base import SampleSet
from merkit.data.registry import load_dataset
from merkit.data.sample import Sample
from merkit.errors import ConfigError, DataLayoutError, MerkitError
from merkit.evaluation.audit import LeakageReport, leakage_audit
from merkit.evaluation.predictions import Predictions, read_predictions, write_predictions
from merkit.evaluation.report import (
    CURVES_JSON,
    CURVES_PNG,
    PREDICTIONS_FILE,
    RUN_FILE,
    SEED_FILE,
    read_probabilities,
    read_run_meta,
    render_run,
)
from merkit.evaluation.splitters import Fold, Splitter, make_splitter
from merkit.io import write_json_atomic
from merkit.models import get_model_entry
from merkit.models.inputs import check_input, model_input, packs_targets
from merkit.preprocess.pipeline import PrepareConfig, Prepared, prepare
from merkit.preprocess.targets import pack_sequences
from merkit.provenance import versions
from merkit.training.config import ExperimentConfig, config_differences, save_yaml
from merkit.training.executors import (
    Engine,
    Executor,
    SharedInputs,
    TrainJob,
    make_executor,
)
from merkit.training.recipe import Recipe
from merkit.training.results import FoldResult, History, mean_history

FOLDS_DIR = "folds"
# Folds handed to the engine per call when the recipe does not say, for models the engine trains
# side by side (its grouped buckets): enough to batch them well (12 and 24 both give the 58-fold
# cabm LOSO in ~215 s), few enough that a run saves its folds every minute or so, since a resume
# loses the unfinished calls. Other models train one fold at a time, so each call is one fold.
DEFAULT_FOLDS_PER_CALL = 12
OUTPUT_FILES = (
    "metrics.json",
    "confusion.png",
    "report.md",
    PREDICTIONS_FILE,
    RUN_FILE,
    CURVES_JSON,
    CURVES_PNG,
)


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
    """One fold of one seed: its name, index arrays and where its predictions go."""

    seed: int
    name: str
    train: np.ndarray
    test: np.ndarray
    path: Path

    @property
    def curves_path(self) -> Path:
        return self.path.with_suffix(".curves.json")


# ---- the protocol and the run folder ---------------------------------------------------------


def build_splitter(config: ExperimentConfig) -> Splitter:
    """The protocol's splitter; a subject-leaking one only when `allow_leakage` is set."""
    splitter = make_splitter(config.protocol.name, **config.protocol.options)
    if not splitter.subject_independent and not config.protocol.allow_leakage:
        raise ConfigError(
            f"protocol {splitter.describe()} puts one subject in both train and test; pass "
            "--allow-leakage (protocol.allow_leakage: true) to run it anyway"
        )
    return splitter


def _clear_run(out_dir: Path) -> None:
    """Remove what a run wrote (and nothing else the folder may hold)."""
    shutil.rmtree(out_dir / FOLDS_DIR, ignore_errors=True)
    for name in OUTPUT_FILES:
        (out_dir / name).unlink(missing_ok=True)
    for path in out_dir.glob("predictions_seed*.csv"):
        path.unlink()


def claim_run_folder(
    out_dir: Path, config: ExperimentConfig, fingerprint: str, *, resume: bool, overwrite: bool
) -> dict[str, Any] | None:
    """Check `out_dir` can take this run; return the earlier run's metadata when resuming."""
    if (out_dir / RUN_FILE).is_file():
        if overwrite or not resume:
            _clear_run(out_dir)
            return None
        previous = read_run_meta(out_dir)
        diffs = config_differences(_identity(previous["config"], out_dir), config.identity())
        if previous.get("data", {}).get("fingerprint") != fingerprint:
            diffs.append("data (fingerprint of the samples)")
        if diffs:
            raise ConfigError(
                f"{out_dir} holds a run with a different config ({', '.join(diffs[:5])} differ); "
                "pass --overwrite to replace it, or choose another output folder"
            )
        return previous
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(
            f"{out_dir} exists and is not a merkit run folder; choose another output folder "
            "or pass --overwrite to write into it"
        )
    return None


def _identity(config_dict: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """A recorded config's identity, normalised through the current config classes."""
    try:
        return ExperimentConfig.from_dict(config_dict).identity()
    except ConfigError as exc:
        raise ConfigError(
            f"{out_dir / RUN_FILE} holds a config this merkit cannot read ({exc}); "
            "pass --overwrite to replace the run, or choose another output folder"
        ) from None


# ---- metadata --------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
    dataset: SampleSet,
    samples: Sequence[Sample],
    failed: Sequence[tuple[str, str]],
    splitter: Splitter,
    audit: LeakageReport,
    out_dir: Path,
    previous: dict[str, Any] | None,
    executor: Executor,
) -> dict[str, Any]:
    leaking = sorted({s for f in audit.leaking_folds for s in f.shared_subjects})
    started = (previous or {}).get("run", {}).get("started_at") or _now()
    return {
        "config": config.to_dict(),
        "run": {"name": out_dir.name, "started_at": started, "finished_at": None},
        "data": {
            "name": dataset.name,
            "root": str(dataset.root),
            "taxonomy": dataset.taxonomy,
            "class_names": list(dataset.class_names),
            "fingerprint": dataset.fingerprint(),
            "n_samples": len(dataset),
            "n_used": len(samples),
            "n_subjects": len({s.subject_key for s in samples}),
            "skipped_by_loader": len(dataset.skipped),
            "notes": list(dataset.notes),
            "failed": [{"sample": uid, "reason": reason} for uid, reason in failed],
        },
        "protocol": {
            "description": splitter.describe(),
            "subject_independent": splitter.subject_independent,
            "n_folds": len(audit.folds),
            "leakage": audit.summary(),
            "leaking_subjects": leaking,
        },
        "determinism": {
            **executor.determinism().to_dict(),
            "seeds": list(config.seeds),
            "job_seeds": "engine.job_seed(seed, member, test indices) per (fold, member) job",
        },
        "versions": versions(),
        "git_commit": _git_commit(),
    }


# ---- folds -----------------------------------------------------------------------------------


def fold_tasks(
    samples: Sequence[Sample], splitter: Splitter, seed: int, out_dir: Path
) -> list[FoldTask]:
    """The folds of one seed, checked to test every sample exactly once (pooling needs it)."""
    splits: list[Fold] = list(splitter.split(samples))
    names = splitter.fold_names(samples)
    tested = np.concatenate([test for _, test in splits]) if splits else np.zeros(0, int)
    if sorted(tested.tolist()) != list(range(len(samples))):
        raise ConfigError(f"protocol {splitter.describe()} does not test every sample exactly once")
    folder = out_dir / FOLDS_DIR / f"seed{seed}"
    return [
        FoldTask(seed, name, np.asarray(train), np.asarray(test), folder / f"{name}.csv")
        for name, (train, test) in zip(names, splits, strict=True)
    ]


def prediction_table(
    samples: Sequence[Sample], probs: np.ndarray, class_names: Sequence[str]
) -> Predictions:
    """A predictions table (argmax class) for `samples` in order."""
    predicted = probs.argmax(axis=1)
    return Predictions(
        dataset=[s.dataset for s in samples],
        subject=[s.subject for s in samples],
        sample=[s.clip for s in samples],
        true=[class_names[s.label] for s in samples],
        predicted=[class_names[int(p)] for p in predicted],
    )


def load_fold(
    task: FoldTask, samples: Sequence[Sample], class_names: Sequence[str]
) -> np.ndarray | None:
    """A finished fold's probabilities, or None if it is missing or not this fold's samples."""
    if not task.path.is_file():
        return None
    expected = [(samples[i].dataset, samples[i].subject, samples[i].clip) for i in task.test]
    try:  # a file that does not parse (e.g. cut short by a crash) is a fold still to run
        table = read_predictions(task.path)
        if list(zip(table.dataset, table.subject, table.sample, strict=True)) != expected:
            return None
        probs = read_probabilities(task.path, class_names)
    except (MerkitError, ValueError, KeyError):
        return None
    return probs if probs is not None and probs.shape == (len(expected), len(class_names)) else None


def save_fold(
    task: FoldTask, samples: Sequence[Sample], result: FoldResult, class_names: Sequence[str]
) -> None:
    """A finished fold's curves, then its predictions (their presence marks the fold done)."""
    if result.history:
        write_json_atomic(task.curves_path, result.history)
    else:  # an engine without history: no stale curves of an earlier attempt at this fold
        task.curves_path.unlink(missing_ok=True)
    table = prediction_table([samples[i] for i in task.test], result.probs, class_names)
    write_predictions(task.path, table, result.probs, class_names)


def load_curves(task: FoldTask) -> History:
    """A finished fold's training curves; empty when it has none (or they do not parse)."""
    try:
        data = json.loads(task.curves_path.read_text(encoding="utf-8"))
        return {str(k): [float(v) for v in values] for k, values in data.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _load_finished(
    tasks: dict[int, list[FoldTask]], samples: Sequence[Sample], class_names: Sequence[str]
) -> tuple[dict[int, np.ndarray], list[History], dict[int, list[FoldTask | None]]]:
    """Per seed: probabilities of the finished folds, their curves, and the folds to run
    (None where a fold is finished, so chunks keep their positions)."""
    seed_probs, todo, histories = {}, {}, []
    for seed, seed_tasks in tasks.items():
        probs = np.zeros((len(samples), len(class_names)), dtype=np.float64)
        todo[seed] = []
        for task in seed_tasks:
            done = load_fold(task, samples, class_names)
            if done is not None:
                probs[task.test] = done
                histories.append(load_curves(task))
            todo[seed].append(task if done is None else None)
        seed_probs[seed] = probs
    return seed_probs, histories, todo


def folds_per_call(recipes: Sequence[Recipe]) -> int:
    """How many folds each engine call trains: the first recipe's `folds_per_batch`, else
    DEFAULT_FOLDS_PER_CALL when some recipe can batch folds, else one."""
    if recipes[0].folds_per_batch:
        return recipes[0].folds_per_batch
    if any(get_model_entry(r.model).groupable for r in recipes):
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
        """How each recipe's curves are named in an ensemble: its model (+ #i if repeated)."""
        models = [r.model for r in self.recipes]
        return [m if models.count(m) == 1 else f"{m}#{i}" for i, m in enumerate(models)]

    def run(
        self, executor: Executor, shared: SharedInputs, progress: Callable[..., None] | None
    ) -> Iterator[tuple[list[FoldTask], list[FoldResult]]]:
        """Yield each chunk with its folds' results: probabilities averaged over the recipes
        (ensemble), curves kept per recipe (prefixed by its label when there are several)."""
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


def prepare_samples(config: ExperimentConfig, dataset: SampleSet, progress: bool) -> Prepared:
    """Prepare `dataset` as `config` says (bad clips skipped and listed); error if none is left."""
    prepared = prepare(
        dataset.samples,
        config.prepare,
        cache_dir=Path(config.cache_dir) if config.cache_dir else None,
        workers=config.workers,
        on_error="skip",
        progress=progress,
    )
    if not prepared.samples:
        raise DataLayoutError(f"{config.data.root}: no sample of {dataset.name} could be prepared")
    return prepared


def training_input(config: ExperimentConfig, x: np.ndarray) -> np.ndarray:
    """Prepared arrays as the config's model needs them (see `recipe_input`)."""
    return recipe_input(config.recipe, config.prepare, x)


def recipe_input(recipe: Recipe, prepare_config: PrepareConfig, x: np.ndarray) -> np.ndarray:
    """Prepared arrays as `recipe`'s model trains on them, checked before any training starts.

    Models that learn from packed targets (MOL: gray + flow + landmark channels per frame) get
    them computed here from the prepared gray sequences.
    """
    if packs_targets(recipe.model) and x.ndim == 5 and x.shape[2] == 1:
        margin = 0.0 if prepare_config.aligned else prepare_config.margin
        x = pack_sequences(x, margin=margin)
    check_input(recipe.model, x.shape, prepare_config.output, **recipe.model_kwargs)
    return np.asarray(model_input(x), dtype=np.float32)


# ---- progress --------------------------------------------------------------------------------


class RunProgress:
    """A rich progress display over folds, with a second bar fed by the engine's callback."""

    def __init__(self, enabled: bool, total_folds: int) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
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


def _default_engine() -> Engine:
    from merkit.training.engine import fit_predict_history

    return fit_predict_history


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
    engine = engine or _default_engine()
    config.validate()
    dataset = load_dataset(
        config.data.name, config.data.root, config.data.taxonomy, **config.data.options
    )
    splitter = build_splitter(config)
    previous = claim_run_folder(
        out_dir, config, dataset.fingerprint(), resume=resume, overwrite=overwrite
    )
    prepared = prepare_samples(config, dataset, progress)
    samples = list(prepared.samples)
    audit = leakage_audit(samples, splitter)

    class_names = list(dataset.class_names)
    x = training_input(config, prepared.x)
    y = np.asarray([s.label for s in samples], dtype=np.int64)
    groups = np.asarray([s.subject_key for s in samples])
    per_call = folds_per_call(config.recipes)
    tasks = {seed: fold_tasks(samples, splitter, seed, out_dir) for seed in config.seeds}
    shared = SharedInputs(engine, x, y, groups, len(class_names))
    with (
        make_executor(config.executor, config.executor_workers, config.ray_address) as executor,
        RunProgress(progress, sum(len(t) for t in tasks.values())).running() as bar,
    ):
        meta = _run_meta(
            config, dataset, samples, prepared.failed, splitter, audit, out_dir, previous, executor
        )
        if prepared.landmarks:  # how the facial points of a region mosaic were found
            meta["data"]["landmarks"] = prepared.landmark_counts()
        save_yaml(out_dir / RUN_FILE, meta)
        seed_probs, histories, todo = _load_finished(tasks, samples, class_names)
        loaded = len(histories)
        bar.folds_done(loaded)
        chunks = [c for slots in todo.values() for c in fixed_chunks(slots, per_call)]
        plan = ChunkPlan(chunks, config.recipes)
        for chunk, results in plan.run(executor, shared, bar.epoch):
            for task, result in zip(chunk, results, strict=True):
                save_fold(task, samples, result, class_names)
                seed_probs[task.seed][task.test] = result.probs
                histories.append(result.history)
            bar.folds_done(len(chunk))
    computed = sum(len(c) for c in plan.chunks)

    _write_pooled(out_dir, samples, seed_probs, class_names)
    _write_curves(out_dir, histories)
    meta["run"]["finished_at"] = _now()
    save_yaml(out_dir / RUN_FILE, meta)
    metrics = render_run(out_dir)
    return RunResult(
        out_dir=out_dir,
        metrics=metrics,
        seconds=(datetime.now(UTC) - start).total_seconds(),
        folds_computed=computed,
        folds_loaded=loaded,
        n_samples=len(samples),
        n_folds=len(audit.folds),
        failed=list(prepared.failed),
    )


def _write_curves(out_dir: Path, histories: Sequence[History]) -> None:
    """curves.json: every series averaged over the folds (and seeds) that recorded it."""
    curves = mean_history(histories)
    if curves:
        write_json_atomic(out_dir / CURVES_JSON, curves)
    else:  # an engine without history: no stale curves from an earlier run of this folder
        (out_dir / CURVES_JSON).unlink(missing_ok=True)


def _write_pooled(
    out_dir: Path,
    samples: Sequence[Sample],
    seed_probs: dict[int, np.ndarray],
    class_names: Sequence[str],
) -> None:
    """predictions.csv (seed-averaged probabilities) and, for several seeds, one file per seed."""
    if len(seed_probs) > 1:
        for seed, probs in seed_probs.items():
            path = out_dir / SEED_FILE.format(seed=seed)
            write_predictions(
                path, prediction_table(samples, probs, class_names), probs, class_names
            )
    mean = np.mean(list(seed_probs.values()), axis=0)
    table = prediction_table(samples, mean, class_names)
    write_predictions(out_dir / PREDICTIONS_FILE, table, mean, class_names)
