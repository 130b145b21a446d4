"""kill -9 in the middle of `merkit train` / `audit` / `prepare`, rerun: nothing finished is redone,
nothing half-written is trusted, and the result equals an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flowdata import write_flow_dataset
from merkit.data.registry import load_dataset
from merkit.preprocess.pipeline import PrepareConfig, prepare
from merkit.synthetic.dataset import SyntheticConfig, generate_casme2_like
from merkit.training.config import build_experiment
from merkit.training.leakage_audit import run_audit
from merkit.training.runner import run_experiment
from torch_threads import torch_threads

MERKIT = [sys.executable, "-c", "from merkit.cli import main; main()"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the in-process reference runs
POLL_S = 0.02
TIMEOUT_S = 300


def kill_when(command: list[str], cwd: Path, ready, done) -> None:
    """Start `command`, SIGKILL it as soon as `ready()` holds; fail if `done()` came first."""
    process = subprocess.Popen(
        command, cwd=cwd, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{command[3:]} ended (rc {process.returncode}) before the kill")
            time.sleep(POLL_S)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not done(), "the run had already finished: the kill interrupted nothing"


def run_cli(args: list[str], cwd: Path) -> str:
    out = subprocess.run(
        [*MERKIT, *args], cwd=cwd, env=ONE_THREAD, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def fold_by_fold_config(tmp_path: Path, epochs: int) -> Path:
    """A cabm experiment on a small flow dataset that trains (and saves) one fold at a time."""
    root = write_flow_dataset(tmp_path / "megc")
    config = tmp_path / "experiment.yaml"
    config.write_text(
        f"data: {{name: megc2019-flow, root: {root}}}\n"
        f"recipe: {{model: cabm, epochs: {epochs}, folds_per_batch: 1}}\n",
        encoding="utf-8",
    )
    return config


def cut_short_fold(folder: Path, suffix: str, partial: bytes) -> list[Path]:
    """The fold files finished at the kill (2 to 5 of 6); then plant what a kill can leave: a
    temp file of a write cut short, and the last fold's own file cut short."""
    finished = sorted(folder.glob(f"*{suffix}"))
    assert 2 <= len(finished) < 6
    (folder / f".smic_s02{suffix}.x1y2.tmp").write_bytes(partial[:10])
    half = folder / f"smic_s02{suffix}"  # the last fold: never finished at the kill
    assert half not in finished
    half.write_bytes(partial)
    return finished


def snapshot(paths: list[Path]) -> dict[Path, tuple[int, bytes]]:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in paths}


@pytest.mark.slow
def test_killed_train_resumes_without_recomputing(tmp_path: Path) -> None:
    config = fold_by_fold_config(tmp_path, epochs=5)
    run, folds = tmp_path / "run", tmp_path / "run" / "folds" / "seed0"
    command = [*MERKIT, "train", "--out", str(run), "--config", str(config), "--quiet"]
    kill_when(
        command,
        tmp_path,
        ready=lambda: len(list(folds.glob("*.csv"))) >= 2,
        done=lambda: (run / "metrics.json").exists(),
    )

    finished = cut_short_fold(
        folds, ".csv", b"dataset,subject,sample,true,predicted,p_negative\nsmic,s02,s02_ne_0"
    )
    before = snapshot(finished)

    stdout = run_cli(["train", "--out", str(run), "--config", str(config), "--quiet"], tmp_path)

    k = len(finished)
    assert f"{6 - k} folds trained, {k} resumed from the run folder" in stdout
    assert snapshot(finished) == before  # not rewritten, not even with equal bytes
    with torch_threads(1):
        reference = run_experiment(build_experiment(config), tmp_path / "reference", progress=False)
    ours, theirs = run / "folds" / "seed0", tmp_path / "reference" / "folds" / "seed0"
    differ = [
        p.name
        for p in sorted(theirs.glob("*.csv"))
        if (ours / p.name).read_bytes() != p.read_bytes()
    ]
    assert differ == [], f"fold files differ from an uninterrupted run's: {differ}"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert metrics == reference.metrics


@pytest.mark.slow
def test_killed_audit_resumes_without_recomputing(tmp_path: Path) -> None:
    config = fold_by_fold_config(tmp_path, epochs=4)
    out, loso = tmp_path / "audit", tmp_path / "audit" / "loso_epochs"
    args = ["audit", "--config", str(config), "--out", str(out), "--k", "3", "--quiet"]
    kill_when(
        [*MERKIT, *args],
        tmp_path,
        ready=lambda: len(list(loso.glob("*.npy"))) >= 2,
        done=lambda: (out / "audit.json").exists(),
    )

    finished = cut_short_fold(loso, ".npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'")
    before = snapshot(finished)

    run_cli(args, tmp_path)

    assert snapshot(finished) == before  # not rewritten, not even with equal bytes
    with torch_threads(1):
        reference = run_audit(build_experiment(config), tmp_path / "reference", k=3, progress=False)
    assert json.loads((out / "audit.json").read_text()) == reference
    for fold in sorted((tmp_path / "reference" / "loso_epochs").glob("*.npy")):
        np.testing.assert_array_equal(np.load(loso / fold.name), np.load(fold))


def cache_arrays(cache: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for path in sorted(cache.rglob("*.npz")):
        with np.load(path) as data:
            arrays[str(path.relative_to(cache))] = data["x"]
    return arrays


@pytest.mark.slow
def test_killed_prepare_resumes_from_its_cache(tmp_path: Path) -> None:
    synthetic = SyntheticConfig(n_subjects=3, clips_per_subject=4, n_frames=16, size=96)
    root = generate_casme2_like(tmp_path / "casme2", synthetic)
    cache = tmp_path / "cache"
    args = ["prepare", "casme2", str(root), "--cache", str(cache), "--flow", "tvl1"]
    args += ["--aligned", "--workers", "1"]
    kill_when(
        [*MERKIT, *args],
        tmp_path,
        ready=lambda: len(list(cache.rglob("*.npz"))) >= 3,
        done=lambda: len(list(cache.rglob("*.npz"))) == 12,
    )

    finished = sorted(cache.rglob("*.npz"))
    assert 3 <= len(finished) < 12
    corrupt, kept = finished[0], finished[1:]
    corrupt.write_bytes(corrupt.read_bytes()[:100])  # a cache entry cut short: recomputed
    (corrupt.parent / f".{corrupt.name}.a1b2.tmp").write_bytes(b"PK\x03\x04")
    before = snapshot(kept)

    stdout = run_cli(args, tmp_path)

    hits = len(kept)
    assert _row(stdout, "cache hits") == hits
    assert _row(stdout, "computed now") == 12 - hits
    assert snapshot(kept) == before
    dataset = load_dataset("casme2", root)
    prepare(
        dataset.samples,
        PrepareConfig(flow="tvl1", aligned=True),
        cache_dir=tmp_path / "reference",
        workers=1,
        progress=False,
    )
    ours, reference = cache_arrays(cache), cache_arrays(tmp_path / "reference")
    assert sorted(ours) == sorted(reference) and len(ours) == 12
    for key, array in reference.items():
        np.testing.assert_array_equal(ours[key], array)


def _row(table: str, name: str) -> int:
    """The integer value of a row of the `merkit prepare` summary table (plain rows in a pipe)."""
    line = next(line for line in table.splitlines() if name in line)
    return int(line.split()[-1])
