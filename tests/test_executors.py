"""Executors: same predictions whatever runs the jobs; jobs cut the same way after a resume."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

from flowdata import CentroidEngine, slow_engine, write_flow_dataset
from merkit.cli import main
from merkit.errors import ConfigError
from merkit.training import base
from merkit.training.config import ExperimentConfig
from merkit.training.engine import TorchEngine
from merkit.training.executors import (
    Executor,
    SharedInputs,
    TrainJob,
    make_executor,
    threads_per_worker,
)
from merkit.training.recipe import default_recipe
from merkit.training.runner import run_experiment
from torch_threads import torch_threads

HAS_RAY = importlib.util.find_spec("ray") is not None
WORKERS = 2


def tiny_config(root: Path, executor: str = "local", **recipe) -> ExperimentConfig:
    """Real cabm recipe, 2 epochs, folds cut in chunks of 2 so there are several jobs."""
    return ExperimentConfig.from_dict(
        {
            "data": {"name": "megc2019-flow", "root": str(root)},
            "recipe": {"model": "cabm", "epochs": 2, "folds_per_batch": 2, **recipe},
            "extra_recipes": [{"model": "ststnet", "epochs": 1, "folds_per_batch": 2}],
            "seeds": [0, 1],
            "executor": executor,
            "executor_workers": WORKERS,
        }
    )


def fold_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("folds/*/*.csv"))}


def test_threads_split_the_cores() -> None:
    assert threads_per_worker(2, cores=2) == 1
    assert threads_per_worker(2, cores=16) == 8
    assert threads_per_worker(3, cores=2) == 1


def test_unknown_executor_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'dask' is unknown"):
        tiny_config(tmp_path, executor="dask")
    with pytest.raises(ConfigError, match="choose one of local, processes, ray"):
        make_executor("dask")


def test_executor_keys_do_not_change_a_runs_identity(tmp_path: Path) -> None:
    local, pool = tiny_config(tmp_path), tiny_config(tmp_path, executor="processes")
    pool.ray_address = "auto"
    assert local.identity() == pool.identity()
    assert local.to_dict() != pool.to_dict()


@pytest.mark.slow
def test_local_and_processes_give_bit_identical_probabilities() -> None:
    """Same jobs, real engine: the float64 arrays are equal bit for bit at equal thread counts."""
    rng = np.random.default_rng(0)
    x = rng.random((18, 3, 28, 28)).astype(np.float32)
    y = np.arange(18) % 3
    groups = np.repeat(np.arange(6), 3)
    folds = tuple((np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in range(6))
    recipe = default_recipe("cabm")
    recipe.epochs, recipe.batch_size = 2, 8
    jobs = [TrainJob(seed, recipe, folds[i : i + 3]) for seed in (0, 1) for i in (0, 3)]
    shared = SharedInputs(TorchEngine(), x, y, groups.astype(str), 3)

    with torch_threads(threads_per_worker(WORKERS)):
        local = dict(Executor().run(shared, jobs))
    with make_executor("processes", WORKERS) as pool:
        seen: list[tuple[int, int]] = []
        parallel = dict(pool.run(shared, jobs, lambda d, t: seen.append((d, t))))

    assert sorted(parallel) == [0, 1, 2, 3]
    for index in local:
        for a, b in zip(local[index], parallel[index], strict=True):
            assert a.probs.dtype == np.float64 and np.array_equal(a.probs, b.probs)
            assert a.history == b.history and len(a.history["train_loss"]) == 2
    assert seen and seen[-1] == (len(jobs) * 3 * 2, len(jobs) * 3 * 2)  # fold-epochs
    assert not np.array_equal(
        local[0][0].probs, local[2][0].probs
    )  # seeds differ: the check can fail


def test_interrupting_the_driver_stops_running_and_queued_worker_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the driver ends the run at the workers' next epoch, not after their jobs."""
    monkeypatch.setenv("MERKIT_TEST_MARKS", str(tmp_path))
    recipe = default_recipe("cabm")
    recipe.epochs = 200  # 20 s per job
    folds = ((np.arange(3), np.arange(3, 6)),)
    jobs = [TrainJob(seed, recipe, folds) for seed in range(4)]
    shared = SharedInputs(slow_engine, np.zeros((6, 1)), np.zeros(6, int), None, 3)

    def ctrl_c_once_both_jobs_run(done: int, total: int) -> None:
        if total == 2 * recipe.epochs and done >= 4:
            raise KeyboardInterrupt

    with make_executor("processes", WORKERS) as pool, pytest.raises(KeyboardInterrupt):
        dict(pool.run(shared, jobs, ctrl_c_once_both_jobs_run))
    assert not list(tmp_path.glob("done-*"))  # no job ran on to its end


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """The tiny run on the local executor, with the thread count of one parallel worker."""
    tmp = tmp_path_factory.mktemp("executors")
    root = write_flow_dataset(tmp / "megc")
    with torch_threads(threads_per_worker(WORKERS)):
        result = run_experiment(tiny_config(root), tmp / "local", progress=False)
    assert result.folds_computed == 12
    return root, tmp / "local", result.metrics


@pytest.mark.slow
@pytest.mark.parametrize(
    "executor",
    [
        "processes",
        pytest.param(
            "ray",
            marks=pytest.mark.skipif(
                not HAS_RAY, reason="ray is not installed (pip install 'merkit[ray]')"
            ),
        ),
    ],
)
def test_parallel_run_equals_local_run(executor: str, local_run, tmp_path: Path) -> None:
    """A whole run (2 seeds, 2-model ensemble, 3 chunks per seed): same files, same metrics."""
    root, local_out, local_metrics = local_run
    result = run_experiment(tiny_config(root, executor), tmp_path / "run", progress=False)

    assert result.folds_computed == 12
    assert fold_files(local_out) == fold_files(tmp_path / "run")
    assert result.metrics == local_metrics
    meta = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert meta["determinism"]["executor"] == executor
    assert meta["determinism"]["workers"] == WORKERS
    assert meta["determinism"]["torch_threads_per_worker"] == threads_per_worker(WORKERS)
    assert meta["determinism"]["torch_deterministic_algorithms"] is True
    assert meta["determinism"]["seeds"] == [0, 1]


def test_resume_keeps_chunk_positions(tmp_path: Path) -> None:
    """After a resume the remaining folds run in the chunks an uninterrupted run gives them."""
    root = write_flow_dataset(tmp_path / "megc")
    config = ExperimentConfig.from_dict(
        {
            "data": {"name": "megc2019-flow", "root": str(root)},
            "recipe": {"model": "cabm", "epochs": 1, "folds_per_batch": 4},
        }
    )
    out = tmp_path / "run"
    first = CentroidEngine()
    run_experiment(config, out, engine=first, progress=False)
    (out / "folds" / "seed0" / "casme2_sub01.csv").unlink()  # fold 0 of chunk [0..3]
    (out / "folds" / "seed0" / "smic_s01.csv").unlink()  # fold 4 of chunk [4, 5]

    class Recording(CentroidEngine):
        sizes: list[int] = []

        def fit_predict(self, recipe, x, y, folds, *args, **kwargs):
            self.sizes.append(len(folds))
            return super().fit_predict(recipe, x, y, folds, *args, **kwargs)

    engine = Recording()
    result = run_experiment(config, out, engine=engine, progress=False)
    assert (result.folds_computed, result.folds_loaded) == (2, 4)
    assert engine.sizes == [1, 1]  # not one chunk [0, 4]


def test_cli_executor_options_are_runtime_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """--executor/--jobs/--address change where jobs run, not which run a folder holds."""
    monkeypatch.setattr(base, "default_engine", CentroidEngine)
    root = write_flow_dataset(tmp_path / "megc")
    args = ["train", "--data", "megc2019-flow", "--root", str(root), "--out", str(tmp_path / "r"),
            "--epochs", "1", "--quiet"]  # fmt: skip
    main(args)
    assert "6 folds trained, 0 resumed" in capsys.readouterr().out
    main([*args, "--executor", "processes", "--jobs", "2", "--address", "auto"])
    assert "0 folds trained, 6 resumed" in capsys.readouterr().out
    meta = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert meta["config"]["executor"] == "processes" and meta["config"]["executor_workers"] == 2
    assert meta["config"]["ray_address"] == "auto"
    assert meta["determinism"]["executor"] == "processes"

    with pytest.raises(SystemExit) as info:
        main([*args, "--executor", "dask"])
    assert info.value.code == 2
    assert "'dask' is unknown" in " ".join(capsys.readouterr().err.split())
