"""MEGC2019 composite under LOSO: each model's shipped default recipe on the published flow maps.

    python benchmarks/megc2019_loso.py --root ../shared/data/megc2019 [--models recommended]
        [--out runs/bench] [--seeds 0,1,2] [--epochs N] [--executor processes --jobs 2]
        [--device cuda] [--recipe '{"ema": 0.98}']

Without --models it runs every flow model, the recommended recipe (`recommended`) among them.
Prints ONE JSON line per model: model, recommended (true for the recommended recipe's row), uf1,
uar, accuracy, per_dataset ({db: {uf1, uar}}), seconds, params, gflops (+ uf1_std/uar_std/
accuracy_std and per_seed ({seed: {uf1, uar}}) when there are several seeds). Figures are pooled
over all folds (MEGC2019 rule); with several seeds they are the mean over seeds of each seed's
pooled figure. `gflops` is the achieved training rate of a network, estimated as 3 x (forward
FLOPs of one sample, counted by torch's FlopCounterMode) x samples trained / wall time (the wall
time includes reading the maps and evaluating, so it is a lower bound); the classic SVMs and the
ensemble have none, and an SVM has no parameter count before it is fitted (params null).
`--root` may hold any subset of the official 442 samples; `--out DIR` keeps each model's run
folder as DIR/<model> (and resumes it on a rerun).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from merkit.models import create_model, get_descriptor, list_models
from merkit.training.config import ExperimentConfig
from merkit.training.recipe import DEFAULT_MODEL, Recipe
from merkit.training.runner import RunResult, run_experiment

NUM_CLASSES = 3
INPUT_SHAPE = (3, 28, 28)  # the published maps


def forward_flops(recipe: Recipe, shape: tuple[int, ...] = INPUT_SHAPE) -> int:
    """FLOPs of one forward pass of one sample (multiply-add = 2 FLOPs)."""
    model = create_model(recipe.model, NUM_CLASSES, shape[0], **recipe.model_kwargs).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *shape))
    return int(counter.get_total_flops())


def param_count(recipe: Recipe) -> int:
    model = create_model(recipe.model, NUM_CLASSES, INPUT_SHAPE[0], **recipe.model_kwargs)
    return sum(p.numel() for p in model.parameters())


def training_gflops(recipe: Recipe, result: RunResult) -> float | None:
    """Achieved training GFLOP/s of the folds this call computed (None if it computed none)."""
    if result.folds_computed == 0 or result.seconds <= 0:
        return None
    n = result.n_samples
    train_per_fold = (
        n * (result.n_folds - 1) / result.n_folds
    )  # LOSO: every sample trains in all folds but one
    samples = train_per_fold * result.folds_computed * recipe.epochs * recipe.seed_members
    return 3 * forward_flops(recipe) * samples / result.seconds / 1e9


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """uf1/uar/accuracy overall and per dataset: pooled, or the mean (and std) over seeds."""
    stats = metrics.get("seed_statistics")
    if stats is None:
        line = {k: round(metrics["overall"][k], 4) for k in ("uf1", "uar", "accuracy")}
        per_dataset = metrics["per_dataset"]
        line["per_dataset"] = {
            db: {k: round(m[k], 4) for k in ("uf1", "uar")} for db, m in per_dataset.items()
        }
        return line
    line = {}
    for key in ("uf1", "uar", "accuracy"):
        line[key] = round(stats["overall"][key]["mean"], 4)
        line[f"{key}_std"] = round(stats["overall"][key]["std"], 4)
    line["per_dataset"] = {
        db: {k: round(m[k]["mean"], 4) for k in ("uf1", "uar")}
        for db, m in stats["per_dataset"].items()
    }
    line["per_seed"] = {
        seed: {k: round(m["overall"][k], 4) for k in ("uf1", "uar")}
        for seed, m in metrics["seeds"].items()
    }
    return line


def run_model(name: str, root: Path, out: Path, args: argparse.Namespace) -> dict:
    keys = {"model": name, **json.loads(args.recipe)}
    if args.epochs is not None:
        keys["epochs"] = args.epochs
    config = ExperimentConfig.from_dict(
        {
            "data": {"name": "megc2019-flow", "root": str(root)},
            "recipe": keys,
            "seeds": [int(s) for s in args.seeds.split(",")],
            "executor": args.executor,
            "executor_workers": args.jobs,
            "device": args.device,
            "precision": args.precision,
        }
    )
    recipe = config.recipe  # the shipped default recipe (epochs overridden if asked)
    result = run_experiment(config, out, progress=sys.stderr.isatty())
    training = get_descriptor(name).training
    line: dict[str, Any] = {"model": name, "recommended": name == DEFAULT_MODEL}
    line.update(headline(result.metrics))
    line["seconds"] = round(result.seconds, 1)
    line["params"] = None if training == "closed-form" else param_count(recipe)
    gflops = training_gflops(recipe, result) if training == "gradient" else None
    if gflops is not None:
        line["gflops"] = round(gflops, 2)
    elif training == "gradient":
        line["note"] = "gflops omitted: every fold was resumed from the run folder"
    line["epochs"] = recipe.epochs
    line["n"] = result.n_samples
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder of the flow maps + gt")
    parser.add_argument("--models", default=None, help="comma-separated (default: flow models)")
    parser.add_argument("--out", type=Path, default=None, help="keep run folders in OUT/<model>")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--executor", default="local", help="local, processes or ray")
    parser.add_argument("--jobs", type=int, default=0, help="training jobs at once (0: per core)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16")
    parser.add_argument(
        "--recipe", default="{}", help='JSON overrides of the default recipes, e.g. {"ema": 0.98}'
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models.split(",") if args.models else list_models("maps")
    for name in models:
        get_descriptor(name)  # fail before any training on a misspelt model
    with tempfile.TemporaryDirectory(prefix="merkit-bench-") as scratch:
        for name in models:
            out = (args.out or Path(scratch)) / name
            line = run_model(name, args.root, out, args)
            line.update(executor=args.executor, recipe_overrides=json.loads(args.recipe))
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
