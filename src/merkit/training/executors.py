"""Executors: where the (seed, recipe, chunk of folds) training jobs of an experiment run.

The runner cuts a run into `TrainJob`s and hands them to an executor, which yields each job's
result as soon as it finishes; the runner (the driver) writes the finished folds itself, so an
interrupted run resumes the same way whatever executed it.

- `local`: one job after the other in this process (the default).
- `processes`: a pool of N "spawn" processes on this machine. Each worker gets the prepared
  arrays once (its initializer) and `max(1, cores // N)` torch threads, so N workers together
  use the machine's cores without oversubscribing it. On a machine with several GPUs, a run on
  "cuda" (or "auto") gives each worker its own GPU, round robin.
- `ray`: Ray tasks, on a running cluster (`address="auto"` or a cluster address) or on a local
  Ray started on the spot with `num_cpus = cores`. The prepared arrays are `ray.put` once. A run
  on a GPU asks Ray for `gpus_per_job` GPUs per job (a fraction lets small flow-map jobs share
  one), and Ray gives each task its own visible device.

Results do not depend on the executor: jobs are cut the same way for all of them and the engine
seeds every (fold, member) job from the run seed and its test indices. CPU kernels split their
reductions by thread, so predictions are bit-identical for the same torch thread count per
worker and agree to float rounding (~1e-7) across thread counts; the run records that count.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from merkit.errors import ConfigError
from merkit.evaluation.splitters import Fold
from merkit.preprocess.arrays import MappedRows, shareable, unshared
from merkit.training.base import Engine, Progress
from merkit.training.devices import CPU, Placement
from merkit.training.recipe import Recipe
from merkit.training.results import FoldResult
from merkit.workers import WorkerPool, checkpoint, report, set_threads

EXECUTORS = ("local", "processes", "ray")


@dataclass(frozen=True)
class TrainJob:
    """One engine call: `recipe` on `folds` (train, test index pairs) with run seed `seed`."""

    seed: int
    recipe: Recipe
    folds: tuple[Fold, ...]


@dataclass(frozen=True)
class SharedInputs:
    """What every job reads: sent to each worker once, not once per job."""

    engine: Engine
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    num_classes: int
    placement: Placement = CPU

    def __reduce__(self) -> tuple:
        """Pickled for a worker with a memory-mapped `x` sent as its file, not its bytes."""
        fields = (self.engine, shareable(self.x), self.y, self.groups, self.num_classes)
        return (_shared_inputs, (*fields, self.placement))


def _shared_inputs(
    engine: Engine,
    x: np.ndarray | MappedRows,
    y: np.ndarray,
    groups: np.ndarray,
    num_classes: int,
    placement: Placement,
) -> SharedInputs:
    return SharedInputs(engine, unshared(x), y, groups, num_classes, placement)


@dataclass(frozen=True)
class Determinism:
    """How a run's numbers were produced, recorded in its config.yaml."""

    executor: str
    workers: int
    torch_threads: int  # per worker

    def to_dict(self) -> dict[str, Any]:
        return {
            "executor": self.executor,
            "workers": self.workers,
            "torch_threads_per_worker": self.torch_threads,
        }


def run_job(shared: SharedInputs, job: TrainJob, progress: Progress | None) -> list[FoldResult]:
    """A job's per-fold results (probabilities and, where the engine keeps them, curves)."""
    results = shared.engine.fit_predict(
        job.recipe,
        shared.x,
        shared.y,
        list(job.folds),
        shared.num_classes,
        job.seed,
        groups=shared.groups,
        progress=progress,
        output="history",
        placement=shared.placement,
    )
    if len(results) != len(job.folds):
        raise RuntimeError(f"engine returned {len(results)} folds for {len(job.folds)}")
    return [FoldResult.of(r) for r in results]


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads of each of `workers` workers so that together they use the cores."""
    return max(1, (cores or cpu_count()) // max(1, workers))


class _Tally:
    """Sums the (done, total) fold-epochs reported by concurrently running jobs."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.jobs: dict[int, tuple[int, int]] = {}

    def update(self, job: int, done: int, total: int) -> None:
        self.jobs[job] = (done, total)
        if self.progress is not None:
            self.progress(
                sum(d for d, _ in self.jobs.values()), sum(t for _, t in self.jobs.values())
            )


class Executor:
    """Runs jobs and yields `(job index, per-fold results)` in the order they finish."""

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Release what the executor started (nothing for the local one)."""

    def determinism(self) -> Determinism:
        return Determinism(self.name, self.workers, self._threads())

    def _threads(self) -> int:
        import torch  # the engines load it anyway; recorded for the run's determinism section

        return torch.get_num_threads()

    def run(
        self, shared: SharedInputs, jobs: Sequence[TrainJob], progress: Progress | None = None
    ) -> Iterator[tuple[int, list[FoldResult]]]:
        tally = _Tally(progress)
        for index, job in enumerate(jobs):
            yield index, run_job(shared, job, lambda d, t, i=index: tally.update(i, d, t))


# ---- processes -------------------------------------------------------------------------------

_shared: SharedInputs | None = None


def _keep_shared(shared: SharedInputs) -> None:
    """Worker start: keep the shared inputs, sent once per worker rather than once per job, and
    take this worker's own GPU when the run is on several."""
    global _shared
    _shared = dataclasses.replace(shared, placement=own_gpu(shared.placement, _worker_rank()))


def _worker_rank() -> int:
    """0, 1, ... for the workers of one pool (multiprocessing numbers a parent's children)."""
    identity = multiprocessing.current_process()._identity
    return identity[-1] - 1 if identity else 0


def own_gpu(placement: Placement, rank: int) -> Placement:
    """Worker `rank`'s share of a run on "cuda" or "auto" over several GPUs: GPU rank mod the
    GPU count (a device named with its index, "cuda:1", stays as named)."""
    if placement.device not in ("auto", "cuda"):
        return placement
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return placement
    index = rank % count
    torch.cuda.set_device(index)
    return placement.on(f"cuda:{index}")


def _run_in_worker(index: int, job: TrainJob) -> list[FoldResult]:
    assert _shared is not None
    checkpoint()  # a queued job that starts after the driver stopped ends at once
    return run_job(_shared, job, lambda done, total: report((index, done, total)))


class ProcessExecutor(Executor):
    """A local pool of "spawn" workers, each with its share of the cores (`merkit.workers`)."""

    name = "processes"

    def __init__(self, workers: int = 0) -> None:
        super().__init__(workers or cpu_count())

    def _threads(self) -> int:
        return threads_per_worker(self.workers)

    def run(
        self, shared: SharedInputs, jobs: Sequence[TrainJob], progress: Progress | None = None
    ) -> Iterator[tuple[int, list[FoldResult]]]:
        tally = _Tally(progress)
        workers = max(1, min(self.workers, len(jobs)))
        with WorkerPool(
            workers, threads=self._threads(), initializer=_keep_shared, initargs=(shared,)
        ) as pool:
            tasks = [(i, job) for i, job in enumerate(jobs)]
            for index, future in pool.run(_run_in_worker, tasks, lambda m: tally.update(*m)):
                yield index, future.result()


# ---- ray -------------------------------------------------------------------------------------


def _ray_job(shared: SharedInputs, x: np.ndarray, job: TrainJob, threads: int) -> list[FoldResult]:
    """A Ray task: `x` arrives from the object store (read-only, and read in place: batches are
    gathered from it), the rest with the task; a GPU task sees only the device Ray gave it."""
    set_threads(threads)
    return run_job(dataclasses.replace(shared, x=x), job, None)


class RayExecutor(Executor):
    """Ray tasks on a cluster (`address`) or on a local Ray with one CPU per core."""

    name = "ray"

    def __init__(
        self, workers: int = 0, address: str | None = None, gpus_per_job: float = 1.0
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "executor 'ray' needs the ray package: pip install 'merkit[ray]'"
            ) from None
        self.ray = ray
        self.address = address
        self.gpus_per_job = gpus_per_job
        self.started = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=cpu_count(), include_dashboard=False, log_to_driver=False)
            self.started = True
        self.cpus = int(ray.cluster_resources().get("CPU", 1))
        super().__init__(workers or self.cpus)

    def _threads(self) -> int:
        return threads_per_worker(self.workers, self.cpus)

    def run(
        self, shared: SharedInputs, jobs: Sequence[TrainJob], progress: Progress | None = None
    ) -> Iterator[tuple[int, list[FoldResult]]]:
        ray = self.ray
        threads = self._threads()
        gpus = self.gpus_per_job if shared.placement.device not in ("cpu", "mps") else 0
        if shared.placement.device == "auto" and not ray.cluster_resources().get("GPU"):
            gpus = 0  # "auto" on a cluster without GPUs: the CPU
        task = ray.remote(num_cpus=threads, num_gpus=gpus)(_ray_job)
        x_ref = ray.put(shared.x)
        placement = shared.placement.on("cuda") if gpus else shared.placement.on("cpu")
        light = dataclasses.replace(shared, x=np.zeros(0), placement=placement)
        light_ref = ray.put(light)
        queue = list(enumerate(jobs))
        running: dict[Any, int] = {}
        try:
            while queue or running:
                while queue and len(running) < self.workers:
                    index, job = queue.pop(0)
                    running[task.remote(light_ref, x_ref, job, threads)] = index
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    yield running.pop(ref), ray.get(ref)
        finally:
            for ref in running:
                ray.cancel(ref)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_executor(
    name: str, workers: int = 0, address: str | None = None, gpus_per_job: float = 1.0
) -> Executor:
    """The executor called `name`; `workers` 0 means one per core (local: always 1)."""
    if name == "local":
        return Executor()
    if name == "processes":
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(workers, address, gpus_per_job)
    raise ConfigError(f"executor {name!r} is unknown; choose one of {', '.join(EXECUTORS)}")
