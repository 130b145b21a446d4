"""What apex spotting does to recognition: LOSO with the true apex vs a spotted one; one JSON line.

`merkit demo`'s synthetic data (12 subjects x 10 clips, 5 classes), the demo's preparation
(onset->apex Farneback flow on the aligned crops) and the default `cabm` recipe under
leave-one-subject-out, pooled UF1 / UAR. The apex of every clip, for training and test alike, is
(a) the one the generator drew, (b) spotted by merkit's default method, (c) spotted by the
earlier first-frame measure, and (d) the middle of onset..offset, the estimate SMIC's loader makes.

Usage: python benchmarks/spotting_loso.py [--data DIR] [--seed 0] [--workers 2]
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
from merkit.data.sample import APEX_ANNOTATED
from merkit.evaluation.metrics import uar, uf1
from merkit.evaluation.splitters import LeaveOneSubjectOut
from merkit.preprocess.config import DEFAULT_SPOTTING, PrepareConfig
from merkit.preprocess.pipeline import prepare
from merkit.synthetic.dataset import SyntheticConfig, generate_casme2_like, with_true_apex
from merkit.training.engine import fit_predict
from merkit.training.recipe import default_recipe

DEMO_PREPARE = PrepareConfig(flow="farneback", aligned=True)


def loso(x: np.ndarray, samples: list, classes: int, seed: int, workers: int) -> dict[str, float]:
    y = np.asarray([s.label for s in samples])
    folds = list(LeaveOneSubjectOut().split(samples))
    probs = fit_predict(default_recipe("cabm"), x, y, folds, classes, seed, workers=workers)
    pred = np.empty(len(y), dtype=np.int64)
    for (_, test), p in zip(folds, probs, strict=True):
        pred[test] = p.argmax(1)
    return {"uf1": round(uf1(y, pred, classes), 4), "uar": round(uar(y, pred, classes), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="demo data folder (made if absent)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    figures: dict[str, object] = {"benchmark": "spotting_loso", "model": "cabm", "seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_casme2_like(args.data or Path(tmp) / "data", SyntheticConfig())
        dataset = load_dataset("casme2", root, "5class")
        truth = with_true_apex(dataset.samples, root)
        true_apex = {s.uid: s.apex for s in truth}
        middle = [  # taken as given, like an annotation, so that prepare does not spot it
            dataclasses.replace(s, apex=(s.onset + s.offset) // 2, apex_source=APEX_ANNOTATED)
            for s in truth
        ]
        ways = {
            "true_apex": (truth, DEMO_PREPARE),
            "spotted": (truth, dataclasses.replace(DEMO_PREPARE, apex_policy="spot")),
            "spotted_first_frame": (
                truth,
                dataclasses.replace(DEMO_PREPARE, apex_policy="spot", spotting="first-frame"),
            ),
            "middle_frame": (middle, DEMO_PREPARE),
        }
        for name, (samples, config) in ways.items():
            start = time.perf_counter()
            prepared = prepare(samples, config, workers=args.workers, progress=False)
            errors = np.abs([s.apex - true_apex[s.uid] for s in prepared.samples])
            result = loso(
                prepared.x, prepared.samples, len(dataset.class_names), args.seed, args.workers
            )
            figures[name] = {
                **result,
                "apex_median_abs_error_frames": float(np.median(errors)),
                "apex_within_3_frames": round(float((errors <= 3).mean()), 4),
                "seconds": round(time.perf_counter() - start, 1),
            }
    figures["spotting"] = DEFAULT_SPOTTING
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
