"""Executors compared on the MEGC2019 development LOSO: prints one JSON line.

    python benchmarks/executors.py [--root ../shared/data/megc2019] [--model cabm] [--epochs N]
        [--executors local,processes,ray] [--jobs 2] [--device cpu]

For each executor: wall seconds of the whole run (`run_experiment`: loading, folds, report),
the ratio to the local run's, and `overhead`, the fraction of the run's CPU time spent outside
the engine's training calls (start-up of workers or Ray, sending inputs, scheduling, reading
and writing). CPU time is this process and its children (pool workers once joined, Ray's
processes read from /proc before Ray stops); training time is measured inside each engine call.
The local executor runs with torch's default threads (one per core), as `merkit train` does,
unless `--local-threads` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
import uuid
from pathlib import Path

import torch

from merkit.training.config import ExperimentConfig
from merkit.training.engine import fit_predict
from merkit.training.executors import cpu_count
from merkit.training.results import FoldResult
from merkit.training.runner import run_experiment

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "megc2019"
TICKS = os.sysconf("SC_CLK_TCK")


class TimedEngine:
    """The real engine, leaving the CPU seconds of each call in `folder` (works in any worker)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def fit_predict(self, *args, **kwargs) -> list[FoldResult]:
        start = time.process_time()
        results = fit_predict(*args, **kwargs)
        seconds = time.process_time() - start
        (self.folder / f"{uuid.uuid4().hex}.txt").write_text(str(seconds))
        return results


def _own_cpu() -> float:
    """CPU seconds of this process and of its waited-for children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _live_descendants_cpu() -> float:
    """CPU seconds of this process's live descendants (Ray's processes), from /proc."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    me, total = os.getpid(), 0
    for pid in ticks:
        p = parent.get(pid)
        while p and p != me:
            p = parent.get(p)
        if p == me:
            total += ticks[pid]
    return total / TICKS


def measure(executor: str, args: argparse.Namespace) -> dict[str, float]:
    config = ExperimentConfig.from_dict(
        {
            "data": {"name": "megc2019-flow", "root": str(args.root)},
            "recipe": {"model": args.model, **({"epochs": args.epochs} if args.epochs else {})},
            "executor": executor,
            "executor_workers": args.jobs if executor != "local" else 0,
            "device": args.device,
        }
    )
    ray = None
    if executor == "ray":  # started here so that its processes can be measured before it stops
        import ray

        ray.init(num_cpus=cpu_count(), include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        timings = Path(tmp) / "cpu"
        timings.mkdir()
        cpu0, ray0, wall0 = _own_cpu(), _live_descendants_cpu(), time.perf_counter()
        run_experiment(config, Path(tmp) / "run", engine=TimedEngine(timings), progress=False)
        wall = time.perf_counter() - wall0
        cpu = _own_cpu() - cpu0 + _live_descendants_cpu() - ray0
        training = sum(float(p.read_text()) for p in timings.iterdir())
    if ray is not None:
        ray.shutdown()
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "overhead": round(1 - training / cpu, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--model", default="cabm")
    parser.add_argument("--epochs", type=int, default=0, help="0: the recipe's own")
    parser.add_argument("--executors", default="local,processes,ray")
    parser.add_argument("--jobs", type=int, default=2, help="training jobs at once")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--local-threads", type=int, default=0, help="0: torch's default")
    args = parser.parse_args()
    if args.local_threads:
        torch.set_num_threads(args.local_threads)
    results = {name: measure(name, args) for name in args.executors.split(",")}
    base = results.get("local", {}).get("wall_s")
    for figures in results.values():
        if base:
            figures["wall_ratio_to_local"] = round(figures["wall_s"] / base, 3)
    line = {
        "benchmark": "executors",
        "model": args.model,
        "epochs": args.epochs or "recipe",
        "jobs": args.jobs,
        "cores": cpu_count(),
        "local_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        **results,
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
