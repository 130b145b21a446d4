"""Host memory of frame sequences at the authors' size: prepared, cached and trained on.

Writes `--clips` synthetic clips (default 442, the MEGC2019 composite's count) in the CASME II
layout, prepares them as ICIP 2024's input (30 RGB frames of 128 x 128) into a cache folder,
then trains the `icip24` paper recipe for `--steps` steps on one LOSO-sized fold. Prints one JSON
line: the prepared array's dtype, bytes and whether it is memory-mapped, the cache's size on
disk, and the process's peak resident memory (VmHWM, reset before each stage) while preparing,
while reading one epoch of batches as the trainer does, and while training on the CPU (which
adds the network's activations, held on the GPU when training there), beside the size the same
array would take as float32.

    python benchmarks/sequence_memory.py [--clips 442] [--steps 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from merkit.data.registry import load_dataset
from merkit.synthetic import SyntheticConfig, generate_casme2_like
from merkit.training.config import build_experiment
from merkit.training.data import TrainingData
from merkit.training.devices import as_float
from merkit.training.engine import fit_predict


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmHWM: peak, VmRSS: now), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return status_mb("VmHWM")


def reset_peak() -> None:
    """Start VmHWM again from the current resident size (Linux), so each stage has its own."""
    Path("/proc/self/clear_refs").write_text("5")


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=442)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="folder for data and cache")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        subjects = 17  # 17 x 26 = 442 clips by default
        synthetic = SyntheticConfig(
            n_subjects=subjects,
            clips_per_subject=max(1, args.clips // subjects),
            classes=("happiness", "surprise", "disgust"),
            size=128,
            n_frames=34,
        )
        start = time.perf_counter()
        root = generate_casme2_like(work / "data", synthetic)
        generated_s = time.perf_counter() - start
        experiment = build_experiment(
            overrides={
                "data.name": "casme2",
                "data.root": str(root),
                "recipe.model": "icip24",
                "recipe.preset": "paper",
                "prepare.aligned": True,
                "cache_dir": str(work / "cache"),
                "workers": args.workers,
            }
        )
        dataset = load_dataset("casme2", root)
        before_prepare = status_mb("VmRSS")
        reset_peak()
        start = time.perf_counter()
        data = TrainingData.prepare(experiment, dataset, progress=False)
        prepare_s = time.perf_counter() - start
        after_prepare = peak_mb()
        x, y = data.x, np.arange(len(data.x)) % 3
        before_epoch = status_mb("VmRSS")
        reset_peak()
        for first in range(0, len(x), 8):  # one epoch of batches, gathered as the trainer does
            rows = np.arange(first, min(first + 8, len(x)))
            as_float(torch.from_numpy(x[rows]))
        data_epoch = peak_mb()
        test = np.arange(len(x) - 7, len(x))
        recipe = dataclasses.replace(experiment.recipe, max_steps=args.steps)
        reset_peak()
        start = time.perf_counter()
        fit_predict(recipe, x, y, [(np.arange(len(x) - 7), test)], 3)
        train_s = time.perf_counter() - start
        prepared = x
        line = {
            "clips": len(prepared),
            "shape": list(prepared.shape),
            "dtype": str(prepared.dtype),
            "memory_mapped": isinstance(prepared, np.memmap),
            "array_mb": round(prepared.nbytes / 2**20, 1),
            "as_float32_mb": round(prepared.size * 4 / 2**20, 1),
            "cache_on_disk_mb": round(folder_mb(work / "cache"), 1),
            "rss_before_preparing_mb": round(before_prepare, 1),
            "peak_rss_preparing_mb": round(after_prepare, 1),
            "rss_before_reading_mb": round(before_epoch, 1),
            "peak_rss_reading_an_epoch_mb": round(data_epoch, 1),
            "peak_rss_training_on_cpu_mb": round(peak_mb(), 1),
            "train_steps": args.steps,
            "batch": recipe.batch_size,
            "generate_s": round(generated_s, 1),
            "prepare_s": round(prepare_s, 1),
            "train_s": round(train_s, 1),
        }
        print(json.dumps(line))


if __name__ == "__main__":
    main()
