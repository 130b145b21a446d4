"""Training speed on CPU: prints one JSON line.

For every registered flow model (shaped as its shipped recipe): ms per training step of a batch
of 64 maps (wall and process CPU time), the FLOPs of that step and the GFLOP/s achieved; then the
throughput of the engine's batched-folds path (`--groups` copies trained as one grouped model).

    python benchmarks/train_speed.py [--threads 1] [--groups 16] [--steps 10]

On a machine shared with other jobs use --threads 1: OpenMP threads that wait on each other
under contention can be many times slower than one thread.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from merkit.models import create_model, list_models
from merkit.training.recipe import default_recipe

BATCH = 64


def _step_fn(name: str, groups: int) -> tuple[callable, int]:
    """A closure running one AdamW training step of `groups` copies, and its FLOP count."""
    recipe = default_recipe(name)
    model = create_model(name, 3, 3, groups=groups, **recipe.model_kwargs).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(BATCH, 3 * groups, 28, 28)
    y = torch.randint(0, 3, (BATCH * groups,))

    def step() -> None:
        loss = F.cross_entropy(model(x).view(-1, 3), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return step, counter.get_total_flops()


def _time(step: callable, steps: int) -> tuple[float, float]:
    """Seconds per step, wall and CPU, after two warm-up steps."""
    for _ in range(2):
        step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, object] = {"threads": args.threads, "batch": BATCH, "models": {}}
    for name in list_models(kind="maps"):
        step, flops = _step_fn(name, 1)
        wall, cpu = _time(step, args.steps)
        result["models"][name] = {
            "ms_per_step": round(wall * 1e3, 2),
            "cpu_ms_per_step": round(cpu * 1e3, 2),
            "gflop_per_step": round(flops / 1e9, 4),
            "gflops_achieved": round(flops / wall / 1e9, 2),
            "gflops_per_cpu_s": round(flops / cpu / 1e9, 2),
        }
    # Useful work of the grouped step = groups x one copy's FLOPs (the counter's own total for
    # grouped layers is not comparable, so it is not used).
    flops = args.groups * _step_fn("cabm", 1)[1]
    step, _ = _step_fn("cabm", args.groups)
    wall, cpu = _time(step, max(2, args.steps // 2))
    result["batched_cabm"] = {
        "groups": args.groups,
        "ms_per_step": round(wall * 1e3, 2),
        "ms_per_copy_step": round(wall * 1e3 / args.groups, 2),
        "samples_per_s": round(args.groups * BATCH / wall, 1),
        "cpu_samples_per_s": round(args.groups * BATCH / cpu, 1),
        "gflops_achieved": round(flops / wall / 1e9, 2),
        "gflops_per_cpu_s": round(flops / cpu / 1e9, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
