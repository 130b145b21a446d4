"""The one worker pool: results and messages reach the driver, a stopped driver stops its tasks,
and kill -9 of a command's main process leaves no worker computing on as an orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import merkit
from flowdata import write_flow_dataset
from inference_fixtures import CLEAR, untrained_checkpoint
from merkit.preprocess.pipeline import PrepareConfig
from merkit.synthetic.dataset import SyntheticConfig, generate_casme2_like, write_synthetic_video
from merkit.workers import Stopped, WorkerPool, checkpoint, report

MERKIT = [sys.executable, "-c", "from merkit.cli import main; main()"]
STARTUP_S = 120  # spawn workers import torch: slow on a loaded machine
EXIT_S = 15  # the workers watch their parent every 0.5 s (slower on a loaded machine)


def square_and_tell(n: int) -> int:
    report(("squared", n))
    return n * n


def wait_for_stop(seconds: float) -> str:
    """Report, then spin until the driver stops the pool (or time runs out)."""
    report("started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        checkpoint()
        time.sleep(0.05)
    return "ran to the end"


def test_pool_yields_every_result_and_forwards_messages() -> None:
    heard: list[object] = []
    with WorkerPool(2, threads=1) as pool:
        results = {
            i: f.result()
            for i, f in pool.run(square_and_tell, [(n,) for n in range(5)], heard.append)
        }
    assert results == {i: i * i for i in range(5)}
    assert sorted(heard) == [("squared", n) for n in range(5)]


def test_an_interrupted_driver_stops_running_tasks_at_their_next_checkpoint() -> None:
    interrupted: list[float] = []

    def interrupt(message: object) -> None:
        interrupted.append(time.monotonic())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), WorkerPool(2) as pool:
        list(pool.run(wait_for_stop, [(60.0,)] * 4, interrupt))
    assert time.monotonic() - interrupted[0] < 20  # not the 60 s the tasks would run


def test_checkpoint_and_report_do_nothing_outside_a_pool() -> None:
    checkpoint()
    report("nobody listens")
    assert issubclass(Stopped, Exception)


# ---- kill -9 of the main process ---------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids of every live (not zombie) process."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            tree.setdefault(int(parent), []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _workers(pid: int) -> list[int]:
    """The pool workers among the descendants (spawn children run `spawn_main`)."""
    found = []
    for child in _descendants(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            found.append(child)
    return found


def assert_no_survivor_after_kill(args: list[str], cwd: Path, workers: int = 2) -> None:
    """Start `merkit ARGS`, kill -9 its main process once `workers` pool workers run, and
    require every process it started to be gone a few seconds later."""
    source = str(Path(merkit.__file__).resolve().parents[1])  # the merkit under test
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": source}
    process = subprocess.Popen(
        [*MERKIT, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    started: list[int] = []
    try:
        deadline = time.monotonic() + STARTUP_S
        while len(_workers(process.pid)) < workers:
            if process.poll() is not None:
                pytest.fail(f"{args[0]} ended before its workers started: {process.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{args[0]} started no {workers} workers in {STARTUP_S} s")
            time.sleep(0.05)
        time.sleep(1.0)  # the workers are busy now (importing, or at their first task)
        started = _descendants(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + EXIT_S
        while any(_alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [p for p in started if _alive(p)]
        assert survivors == [], f"{len(survivors)} of {len(started)} processes outlived the kill"
    finally:  # whatever happened, leave nothing running for the next test
        for pid in [*(started or _descendants(process.pid)), process.pid]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()


@pytest.mark.slow
def test_killed_train_leaves_no_worker(tmp_path: Path) -> None:
    root = write_flow_dataset(tmp_path / "megc")
    args = ["train", "--data", "megc2019-flow", "--root", str(root), "--out", str(tmp_path / "r"),
            "--model", "cabm", "--epochs", "2000", "--seeds", "0,1", "--executor", "processes",
            "--jobs", "2", "--quiet"]  # fmt: skip
    assert_no_survivor_after_kill(args, tmp_path)


@pytest.mark.slow
def test_killed_prepare_leaves_no_worker(tmp_path: Path) -> None:
    synthetic = SyntheticConfig(n_subjects=2, clips_per_subject=6, n_frames=16, size=96)
    root = generate_casme2_like(tmp_path / "casme2", synthetic)
    args = ["prepare", "casme2", str(root), "--cache", str(tmp_path / "cache"), "--aligned",
            "--flow", "tvl1", "--workers", "2", "--quiet"]  # fmt: skip
    assert_no_survivor_after_kill(args, tmp_path)


@pytest.mark.slow
def test_killed_predict_leaves_no_worker(tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    untrained_checkpoint(model, config=PrepareConfig(flow="dis"))
    videos = []
    for i in range(6):
        path = tmp_path / f"clip{i}.mp4"
        write_synthetic_video(path, subject=i, n_frames=60, onset=10, config=CLEAR)
        videos.append(str(path))
    args = ["predict", str(model), *videos, "--aligned", "--workers", "2", "--quiet"]
    assert_no_survivor_after_kill(args, tmp_path)
