"""The training engine: fit a recipe on many folds at once and return test probabilities.

Public API (stable; the experiment runner builds on it):

- `fit_predict(recipe, x, y, folds, num_classes, seed, groups, progress, workers)
  -> list[np.ndarray]` per fold, the test-sample class probabilities (averaged over
  `recipe.ensemble` members). `workers` > 1 spreads batches of folds over single-threaded
  processes ("spawn": a calling script needs the usual `if __name__ == "__main__":` guard).
- `fit_predict_history(...)` the same, but per fold a `FoldResult`: the probabilities and the
  per-epoch training curves (`train_loss`, `train_accuracy`, and `val_loss`, `val_accuracy`
  with validation subjects), averaged over ensemble members. The runner uses this one.
- `fit_predict_epochs(...)` the same, but per fold an array (epochs, n_test, K) of the test
  probabilities after every epoch -- only for the leakage audit's labelled "oracle" figure.
- `fit(recipe, x, y, num_classes, seed) -> nn.Module` one final model on all the data.

Why it is fast on CPU: models registered `groupable` are built with `groups=G`, so the G models
of G (fold, member) jobs train as one network of grouped convolutions, each copy on its own
batches. The copies share nothing: BatchNorm is per channel, the loss is a sum of per-copy
losses, Adam/AdamW/SGD update every element independently (no gradient clipping), and the
sharpness-aware step normalises each copy's gradient by that copy's own norm.

Why it is honest: a job's model sees only its training indices (minus `val_subjects` validation
subjects when asked); the held-out fold is evaluated, never used to choose anything. With
validation subjects, the epoch with the lowest validation loss gives the test probabilities.

Why it is reproducible: each job draws its initial weights, batches and augmentations from its
own generator seeded by (seed, member, test indices), so a fold gives the same result whether it
is trained alone, in a batch of folds, or after a resume (to float rounding). Dropout in the
groupable models (`CopyDropout`) draws each copy's masks from that copy's generator too; any
other randomness (e.g. ConVAT's latent noise, in models that train one job at a time) comes
from the global generator, seeded per job.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from queue import Empty

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from merkit.errors import ConfigError
from merkit.models import create_model, get_model_entry, unstack_model
from merkit.models.blocks import use_copy_generators
from merkit.models.registry import stack_models
from merkit.training.augment import AugmentParams, apply_params, hflip_flow, sample_params
from merkit.training.recipe import Recipe
from merkit.training.results import FoldResult, History, mean_history

Fold = tuple[np.ndarray, np.ndarray]
Progress = Callable[[int, int], None]
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # maps, targets, sample weights

# The per-epoch series a job records (the last two only with validation subjects).
_SERIES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")

# Activation memory the engine allows one batch of grouped jobs (floats), when it picks the size.
_AUTO_BUDGET_FLOATS = 150_000_000


@dataclass
class Job:
    """One model to train: member `member` of fold `fold`."""

    fold: int
    member: int
    train: np.ndarray
    test: np.ndarray
    val: np.ndarray
    seed: int


class _Counter:
    """Counts finished job-epochs for the progress callback."""

    def __init__(self, callback: Progress | None, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0

    def add(self, n: int) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)


def fit_predict(
    recipe: Recipe,
    x: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    num_classes: int,
    seed: int = 0,
    groups: Sequence[str] | np.ndarray | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> list[np.ndarray]:
    """Per fold, the (len(test_idx), num_classes) probabilities of its test samples.

    `groups` (subject key per sample) is needed only when `recipe.val_subjects` > 0.
    `workers` > 1 trains batches of folds in that many single-threaded processes; the
    probabilities do not depend on it (up to float rounding).
    """
    results = fit_predict_history(recipe, x, y, folds, num_classes, seed, groups, progress, workers)
    return [result.probs for result in results]


def fit_predict_history(
    recipe: Recipe,
    x: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    num_classes: int,
    seed: int = 0,
    groups: Sequence[str] | np.ndarray | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> list[FoldResult]:
    """Per fold, `fit_predict`'s probabilities with the fold's per-epoch training curves."""
    results = _run(recipe, x, y, folds, num_classes, seed, groups, progress, False, workers)
    return [FoldResult(curve[-1], history) for curve, history in results]


def fit_predict_epochs(
    recipe: Recipe,
    x: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    num_classes: int,
    seed: int = 0,
    groups: Sequence[str] | np.ndarray | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> list[np.ndarray]:
    """Per fold, (epochs, len(test_idx), num_classes): test probabilities after every epoch.

    For the leakage audit's "oracle" figure only (choosing an epoch on these is peeking).
    """
    results = _run(recipe, x, y, folds, num_classes, seed, groups, progress, True, workers)
    return [curve for curve, _ in results]


def fit(
    recipe: Recipe,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    seed: int = 0,
    progress: Progress | None = None,
) -> nn.Module:
    """Train on all samples; an ordinary model (or a probability-averaging ensemble of them)."""
    if recipe.val_subjects:
        raise ConfigError("fit() trains on all samples; set val_subjects to 0 for a final model")
    fold = (np.arange(len(y)), np.zeros(0, dtype=np.int64))
    jobs = _make_jobs(recipe, [fold], seed, None)
    models: list[nn.Module] = []
    _check_inputs(recipe, x, y, [fold], num_classes)
    counter = _Counter(progress, len(jobs) * recipe.epochs)
    with _deterministic():
        for bucket in _buckets(recipe, jobs, x.shape):
            trainer = _BucketTrainer(recipe, bucket, x, y, num_classes)
            trainer.train(counter)
            models.extend(trainer.single_models())
    if len(models) == 1:
        return models[0].eval()
    return ProbabilityAverage(models).eval()


class ProbabilityAverage(nn.Module):
    """An ensemble returning log(mean softmax) of its members (softmax gives the mean probs)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).softmax(-1) for m in self.members]).mean(0)
        return probs.clamp_min(1e-12).log()


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
    groups: Sequence[str] | np.ndarray | None,
    progress: Progress | None,
    record: bool,
    workers: int = 1,
) -> list[tuple[np.ndarray, History]]:
    """Per fold, its test-probability curve (epochs or 1, n_test, K) and its history, each the
    mean over the fold's ensemble members."""
    _check_inputs(recipe, x, y, folds, num_classes)
    jobs = _make_jobs(recipe, folds, seed, groups)
    counter = _Counter(progress, len(jobs) * recipe.epochs)
    buckets = list(_buckets(recipe, jobs, x.shape, max(workers, 1)))
    if workers > 1 and len(buckets) > 1:
        results = _train_in_processes(recipe, buckets, x, y, num_classes, record, workers, counter)
    else:
        results = [_train_bucket(recipe, b, x, y, num_classes, record, counter) for b in buckets]
    trained = {
        (job.fold, job.member): outcome
        for bucket, result in zip(buckets, results, strict=True)
        for job, outcome in zip(bucket, result, strict=True)
    }
    members = range(recipe.ensemble)
    return [
        (
            np.mean([trained[f, m][0] for m in members], axis=0),
            mean_history([trained[f, m][1] for m in members]),
        )
        for f in range(len(folds))
    ]


def _train_bucket(
    recipe: Recipe,
    bucket: list[Job],
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    record: bool,
    counter: _Counter,
) -> list[tuple[np.ndarray, History]]:
    with _deterministic():
        return _BucketTrainer(recipe, bucket, x, y, num_classes).train(counter, record)


class TrainingStopped(Exception):
    """A worker's training gave up because its driver stopped (Ctrl-C or an error there)."""


_worker_progress: Queue | None = None
_worker_stop: Event | None = None


def ignore_ctrl_c() -> None:
    """In a pool worker: Ctrl-C reaches the terminal's whole process group, and the driver,
    not each worker, decides what stops (it sets the workers' stop event)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _init_worker(progress: Queue, stop: Event, threads: int, parent: int) -> None:
    global _worker_progress, _worker_stop
    ignore_ctrl_c()
    _worker_progress, _worker_stop = progress, stop
    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent was killed exits instead of training on as an orphan."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


class _QueueCounter(_Counter):
    """A worker's counter: finished job-epochs go to the parent through a queue, and a stopped
    parent ends the training at the next epoch."""

    def add(self, n: int) -> None:
        if _worker_stop.is_set():
            raise TrainingStopped
        _worker_progress.put(n)


def _train_in_worker(
    recipe: Recipe, bucket: list[Job], x: np.ndarray, y: np.ndarray, k: int, record: bool
) -> list[tuple[np.ndarray, History]]:
    return _train_bucket(recipe, bucket, x, y, k, record, _QueueCounter(None, 0))


def _train_in_processes(
    recipe: Recipe,
    buckets: list[list[Job]],
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    record: bool,
    workers: int,
    counter: _Counter,
) -> list[list[tuple[np.ndarray, History]]]:
    """Buckets spread over `workers` single-threaded processes (robust on a shared CPU)."""
    context = multiprocessing.get_context("spawn")
    queue, stop = context.Queue(), context.Event()
    initargs = (queue, stop, 1, os.getpid())
    with ProcessPoolExecutor(workers, context, _init_worker, initargs) as pool:
        futures = [
            pool.submit(_train_in_worker, recipe, b, x, y, num_classes, record) for b in buckets
        ]
        pending = set(futures)
        try:
            while pending:
                _, pending = wait(pending, timeout=0.5)
                _drain(queue, counter)
        except BaseException:  # Ctrl-C or a failed callback: end running and queued buckets now
            stop.set()
            for future in pending:
                future.cancel()
            raise
    _drain(queue, counter)
    return [f.result() for f in futures]


def _drain(queue: Queue, counter: _Counter) -> None:
    """Forward the job-epochs the workers finished to the progress callback."""
    while True:
        try:
            counter.add(queue.get_nowait())
        except Empty:
            return


def _check_inputs(
    recipe: Recipe, x: np.ndarray, y: np.ndarray, folds: Sequence[Fold], num_classes: int
) -> None:
    if x.ndim != 4 or len(x) != len(y):
        raise ConfigError(f"expected x of shape (N, C, H, W) with N = {len(y)}, got {x.shape}")
    if recipe.ensemble < 1 or recipe.epochs < 1 or recipe.batch_size < 1:
        raise ConfigError("recipe ensemble, epochs and batch_size must be at least 1")
    kind = get_model_entry(recipe.model).input_spec.kind
    if kind != "flow" and (recipe.augment.hflip or recipe.tta_flip):
        # The flip rewrites channel 0 as the u component of a flow map; elsewhere it is wrong.
        raise ConfigError(
            f"recipe {recipe.model}: the flow-aware flip (augment.hflip / tta_flip) applies to "
            f"flow maps only, and {recipe.model} takes {kind} input: set both to false"
        )
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ConfigError(f"labels must lie in 0..{num_classes - 1}")
    for i, (train, test) in enumerate(folds):
        if len(train) == 0:
            raise ConfigError(f"fold {i} has no training samples")
        if np.intersect1d(train, test).size:
            raise ConfigError(f"fold {i} puts the same sample in its training and test sides")


def _make_jobs(
    recipe: Recipe,
    folds: Sequence[Fold],
    seed: int,
    groups: Sequence[str] | np.ndarray | None,
) -> list[Job]:
    if recipe.val_subjects and groups is None:
        raise ConfigError("recipe.val_subjects > 0 needs the subject of every sample (groups)")
    jobs = []
    for f, (train, test) in enumerate(folds):
        train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
        for member in range(recipe.ensemble):
            s = job_seed(seed, member, test)
            fit_idx, val_idx = train, np.zeros(0, dtype=np.int64)
            if recipe.val_subjects:
                fit_idx, val_idx = _carve_validation(train, np.asarray(groups), recipe, s, f)
            jobs.append(Job(f, member, fit_idx, test, val_idx, s))
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


def _steps_per_epoch(job: Job, batch_size: int) -> int:
    return math.ceil(len(job.train) / min(batch_size, len(job.train)))


def _buckets(
    recipe: Recipe, jobs: list[Job], shape: tuple[int, ...], workers: int = 1
) -> Iterator[list[Job]]:
    """Group jobs that can train side by side (same steps per epoch), in bounded numbers,
    and in at least `workers` buckets when the engine picks the size."""
    if not get_model_entry(recipe.model).groupable:
        size = 1
    elif recipe.folds_per_batch > 0:
        size = recipe.folds_per_batch
    else:
        size = _auto_bucket_size(recipe, shape)
    by_steps: dict[tuple[int, int], list[Job]] = {}
    for job in jobs:
        batch = min(recipe.batch_size, len(job.train))
        by_steps.setdefault((_steps_per_epoch(job, recipe.batch_size), batch), []).append(job)
    for same in by_steps.values():
        if recipe.folds_per_batch <= 0:
            size = min(size, math.ceil(len(same) / workers))
        for start in range(0, len(same), size):
            yield same[start : start + size]


def _auto_bucket_size(recipe: Recipe, shape: tuple[int, ...]) -> int:
    """How many copies fit the activation budget (a rough count from one probe forward)."""
    probe = create_model(recipe.model, 2, shape[1], **recipe.model_kwargs)
    floats = 0

    def count(_: nn.Module, __: object, out: object) -> None:
        nonlocal floats
        floats += out.numel() if isinstance(out, torch.Tensor) else 0

    leaves = [m for m in probe.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    with torch.no_grad():
        probe.eval()(torch.zeros(1, *shape[1:]))
    for h in hooks:
        h.remove()
    per_copy = max(floats, 1) * recipe.batch_size
    return int(max(1, min(64, _AUTO_BUDGET_FLOATS // per_copy)))


class _BatchStream:
    """Endless batches of a job's training indices: reshuffled every pass, fixed batch size.

    Unshuffled (`shuffle=False`), every epoch is the indices in their given order, its last
    batch filled up from the start of that order, and the next epoch starts again at the first.
    """

    def __init__(
        self,
        indices: np.ndarray,
        batch_size: int,
        generator: torch.Generator,
        shuffle: bool = True,
    ) -> None:
        self.indices = torch.from_numpy(indices)
        self.batch_size, self.generator, self.shuffle = batch_size, generator, shuffle
        self.buffer = torch.zeros(0, dtype=torch.int64)

    def next(self) -> torch.Tensor:
        if not self.shuffle and len(self.buffer) == 0:
            epoch = math.ceil(len(self.indices) / self.batch_size) * self.batch_size
            self.buffer = self.indices[torch.arange(epoch) % len(self.indices)]
        while len(self.buffer) < self.batch_size:
            order = torch.randperm(len(self.indices), generator=self.generator)
            self.buffer = torch.cat([self.buffer, self.indices[order]])
        batch, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size :]
        return batch


class _WeightAverage:
    """An exponential moving average of a model's weights and float buffers (`recipe.ema`).

    Element-wise, so the copies of a grouped model are averaged independently. The decay ramps
    up as (1 + n) / (10 + n) over the first updates so early weights do not linger.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model, self.decay, self.updates = model, decay, 0
        self.state = {
            k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()
        }

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = self.model.state_dict()
        for key, avg in self.state.items():
            avg.lerp_(current[key], 1 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model for the block, the trained ones restored after."""
        saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.load()
        try:
            yield
        finally:
            self.model.load_state_dict(saved)

    def load(self) -> None:
        self.model.load_state_dict(self.state, strict=False)


class _BucketTrainer:
    """Trains the jobs of one bucket as one grouped model (or one ordinary model if alone)."""

    def __init__(
        self, recipe: Recipe, jobs: list[Job], x: np.ndarray, y: np.ndarray, num_classes: int
    ) -> None:
        self.recipe, self.jobs, self.k = recipe, jobs, num_classes
        self.g = len(jobs)
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64))
        self.in_chans = x.shape[1]
        self.model = self._build()
        self.batch = min(recipe.batch_size, len(jobs[0].train))
        self.steps = _steps_per_epoch(jobs[0], recipe.batch_size)
        self.class_weight = torch.stack([self._class_weight(j) for j in jobs])  # (G, K)

    def _single(self, job: Job) -> nn.Module:
        torch.manual_seed(job.seed)
        return create_model(self.recipe.model, self.k, self.in_chans, **self.recipe.model_kwargs)

    def _build(self) -> nn.Module:
        singles = [self._single(j) for j in self.jobs]
        if self.g == 1:
            return singles[0]
        grouped = create_model(
            self.recipe.model, self.k, self.in_chans, groups=self.g, **self.recipe.model_kwargs
        )
        return stack_models(singles, grouped)

    def single_models(self) -> list[nn.Module]:
        """The trained copies as ordinary models."""
        if self.g == 1:
            return [self.model]
        return [
            unstack_model(self.model, i, self._single(j), self.g) for i, j in enumerate(self.jobs)
        ]

    def _class_weight(self, job: Job) -> torch.Tensor:
        if not self.recipe.class_weighted:
            return torch.ones(self.k)
        counts = torch.bincount(self.y[job.train], minlength=self.k).float()
        weight = counts.sum() / (self.k * counts.clamp_min(1))
        return torch.where(counts > 0, weight, torch.zeros_like(weight))

    def _optimizer(self) -> torch.optim.Optimizer:
        r = self.recipe
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        rest = [p for p in self.model.parameters() if p.ndim <= 1]
        params = [
            {"params": decay, "weight_decay": r.weight_decay},
            {"params": rest, "weight_decay": 0},
        ]
        if r.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=r.lr, fused=True)
        if r.optimizer == "adam":  # L2 penalty in the gradient, as the original papers
            return torch.optim.Adam(params, lr=r.lr, fused=True)
        if r.optimizer == "sgd":
            return torch.optim.SGD(params, lr=r.lr, momentum=0.9, nesterov=True)
        raise ConfigError(f"unknown optimizer {r.optimizer!r}; choose adamw, adam or sgd")

    def _lr_factor(self, step: int) -> float:
        r, total = self.recipe, self.recipe.epochs * self.steps
        warmup = r.warmup_epochs * self.steps
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if r.schedule == "constant":
            return 1.0
        if r.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))
        raise ConfigError(f"unknown schedule {r.schedule!r}; choose cosine or constant")

    def train(self, counter: _Counter, record: bool = False) -> list[tuple[np.ndarray, History]]:
        """Run the schedule; per job its test probabilities (epochs or 1, n_test, K) and its
        per-epoch history (training loss and accuracy; validation ones with val_subjects)."""
        gens = [torch.Generator().manual_seed(j.seed) for j in self.jobs]
        torch.manual_seed(self.jobs[0].seed)  # other randomness (models trained job by job)
        use_copy_generators(self.model, gens)  # each copy's dropout masks from its own draws
        try:
            return self._schedule(counter, record, gens)
        finally:
            use_copy_generators(self.model, None)

    def _schedule(
        self, counter: _Counter, record: bool, gens: list[torch.Generator]
    ) -> list[tuple[np.ndarray, History]]:
        r = self.recipe
        opt = self._optimizer()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self._lr_factor)
        streams = [
            _BatchStream(j.train, self.batch, gen, r.shuffle)
            for j, gen in zip(self.jobs, gens, strict=True)
        ]
        average = _WeightAverage(self.model, r.ema) if r.ema > 0 else None
        evaluated = average.applied if average else nullcontext
        watch = record or r.val_subjects > 0
        test_curve, series = [], {name: [] for name in _SERIES[: 4 if r.val_subjects else 2]}
        for _ in range(r.epochs):
            self.model.train()
            epoch_loss, epoch_correct = torch.zeros(self.g), torch.zeros(self.g)
            for _ in range(self.steps):
                idx = torch.stack([s.next() for s in streams])  # (G, B)
                batch = self._inputs(idx, gens)
                loss, copy_loss, copy_correct = self._loss(idx, *batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if r.sam > 0:
                    self._sharpness_step(idx, batch)
                opt.step()
                sched.step()
                if average:
                    average.update()
                epoch_loss += copy_loss
                epoch_correct += copy_correct
            series["train_loss"].append(epoch_loss.numpy() / self.steps)
            series["train_accuracy"].append(epoch_correct.numpy() / (self.steps * self.batch))
            if watch:
                with evaluated():
                    test_curve.append(self._probabilities([j.test for j in self.jobs]))
                    if r.val_subjects:
                        val_loss, val_accuracy = self._validation()
                        series["val_loss"].append(val_loss)
                        series["val_accuracy"].append(val_accuracy)
            counter.add(self.g)
        if average:
            average.load()  # the trained model (and a final model from `fit`) is the average
        if not watch:
            test_curve.append(self._probabilities([j.test for j in self.jobs]))
        curves = np.stack(test_curve, axis=1)  # (G, epochs, M, K)
        table = {name: np.stack(values, axis=1) for name, values in series.items()}  # (G, E)
        histories = [{n: v[i].tolist() for n, v in table.items()} for i in range(self.g)]
        if record:
            chosen = [c[:, : len(j.test)] for c, j in zip(curves, self.jobs, strict=True)]
        elif r.val_subjects:
            best = np.argmin(table["val_loss"], axis=1)  # per job
            chosen = [
                curves[i, b, None, : len(j.test)]
                for i, (b, j) in enumerate(zip(best, self.jobs, strict=True))
            ]
        else:
            chosen = [c[-1:, : len(j.test)] for c, j in zip(curves, self.jobs, strict=True)]
        return list(zip(chosen, histories, strict=True))

    def _sharpness_step(self, idx: torch.Tensor, batch: Batch) -> None:
        """Sharpness-aware minimisation (Foret et al. 2021, `recipe.sam` = rho): replace the
        gradient g by the one at w + rho g / ||g||, the worst nearby weights to first order.

        ||g|| is each copy's own norm, so copies stay independent; the perturbed pass leaves
        BatchNorm's running statistics alone (they describe the weights actually kept).
        """
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = sum(p.grad.view(self.g, -1).pow(2).sum(1) for p in params).sqrt()  # (G,)
        scale = (self.recipe.sam / norm.clamp_min(1e-12))[:, None]
        steps = [(p.grad.view(self.g, -1) * scale).view_as(p) for p in params]
        with torch.no_grad():
            for p, step in zip(params, steps, strict=True):
                p.add_(step)
        for p in params:
            p.grad = None
        with _running_stats_frozen(self.model):
            self._loss(idx, *batch)[0].backward()
        with torch.no_grad():
            for p, step in zip(params, steps, strict=True):
                p.sub_(step)

    def _inputs(self, idx: torch.Tensor, gens: list[torch.Generator]) -> Batch:
        """A training batch of every copy: augmented maps, (mixed) targets, sample weights."""
        r, b = self.recipe, self.batch
        xb = self.x[idx.flatten()]  # (G*B, C, H, W), copy-major
        params = AugmentParams.cat(
            [sample_params((b, *xb.shape[1:]), r.augment, gen) for gen in gens]
        )
        xb = apply_params(xb, params, r.augment)
        target = F.one_hot(self.y[idx], self.k).float()  # (G, B, K)
        weight = self.class_weight.gather(1, self.y[idx])  # (G, B)
        if r.augment.mixup > 0:
            xb, target, weight = self._mixup(xb, target, weight, gens)
        return xb, target, weight

    def _loss(
        self, idx: torch.Tensor, xb: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sum over copies of each copy's weighted, smoothed (and mixed) cross-entropy (plus the
        model's auxiliary loss); also, detached, each copy's cross-entropy and correct count."""
        r, g, b = self.recipe, self.g, self.batch
        if r.label_smoothing > 0:
            target = target * (1 - r.label_smoothing) + r.label_smoothing / self.k
        logits = self._forward(xb.view(g, b, *xb.shape[1:]))  # (B, G, K)
        nll = -(target.transpose(0, 1) * logits.log_softmax(-1)).sum(-1)  # (B, G)
        w = weight.transpose(0, 1)
        per_copy = (nll * w).sum(0) / w.sum(0).clamp_min(1e-12)  # (G,)
        correct = (logits.detach().argmax(-1) == self.y[idx].transpose(0, 1)).sum(0)
        loss = per_copy.sum()
        aux = getattr(self.model, "aux_loss", None)
        if callable(aux) and (extra := aux()) is not None:
            loss = loss + extra
        return loss, per_copy.detach(), correct.float()

    def _mixup(
        self,
        xb: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor,
        gens: list[torch.Generator],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mix each sample with another of the same copy's batch, one Beta(a, a) draw per copy."""
        g, b, a = self.g, self.batch, self.recipe.augment.mixup
        lam, perm = [], []
        for gen in gens:
            lam.append(_beta(a, gen))
            perm.append(torch.randperm(b, generator=gen))
        lam_t = torch.tensor(lam).view(g, 1)
        order = torch.stack(perm)  # (G, B)
        xs = xb.view(g, b, *xb.shape[1:])
        other = torch.stack([xs[i, order[i]] for i in range(g)])
        lx = lam_t.view(g, 1, 1, 1, 1)
        mixed = (lx * xs + (1 - lx) * other).view_as(xb)
        tgt = lam_t[..., None] * target + (1 - lam_t[..., None]) * target.gather(
            1, order[..., None].expand_as(target)
        )
        wgt = lam_t * weight + (1 - lam_t) * weight.gather(1, order)
        return mixed, tgt, wgt

    def _forward(self, xs: torch.Tensor) -> torch.Tensor:
        """Copy-major inputs (G, B, C, H, W) -> logits (B, G, K)."""
        g, b = xs.shape[:2]
        grouped = xs.transpose(0, 1).reshape(b, g * xs.shape[2], *xs.shape[3:])
        return self.model(grouped).view(b, g, self.k)

    @torch.no_grad()
    def _probabilities(self, sides: list[np.ndarray]) -> np.ndarray:
        """Softmax of every copy on its own samples, padded to a common length: (G, M, K)."""
        self.model.eval()
        m = max(1, max(len(s) for s in sides))
        idx = torch.stack(
            [torch.from_numpy(np.resize(s, m) if len(s) else np.zeros(m, np.int64)) for s in sides]
        )
        flat = self.x[idx.flatten()]
        probs = self._forward(flat.view(self.g, m, *flat.shape[1:])).softmax(-1)
        if self.recipe.tta_flip:
            flipped = hflip_flow(flat, self.recipe.augment.u_scaling)
            probs = (
                probs + self._forward(flipped.view(self.g, m, *flat.shape[1:])).softmax(-1)
            ) / 2
        return probs.transpose(0, 1).numpy()

    @torch.no_grad()
    def _validation(self) -> tuple[np.ndarray, np.ndarray]:
        """Per copy, the mean cross-entropy and the accuracy on its validation subjects."""
        probs = self._probabilities([j.val for j in self.jobs])
        losses, accuracies = [], []
        for p, job in zip(probs, self.jobs, strict=True):
            labels = self.y[job.val].numpy()
            p = p[: len(labels)]
            true = p[np.arange(len(labels)), labels]
            losses.append(float(-np.log(np.clip(true, 1e-12, None)).mean()))
            accuracies.append(float((p.argmax(1) == labels).mean()))
        return np.asarray(losses), np.asarray(accuracies)


def _beta(a: float, generator: torch.Generator) -> float:
    """A Beta(a, a) draw from `generator` (Johnk's method), so mixup follows the job's seed."""
    while True:
        u, v = torch.rand(2, generator=generator).tolist()
        x, y = u ** (1 / a), v ** (1 / a)
        if 0 < x + y <= 1:
            return x / (x + y)


@contextmanager
def _running_stats_frozen(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers still normalise by the batch but leave their running statistics as is."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum


@contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic kernels during training; the caller's setting is restored afterwards."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
