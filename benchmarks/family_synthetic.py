"""ConVAT, C3D-GRU, ICIP 2024 and MOL (and CABM and the classic SVMs for reference) under LOSO on
a synthetic CASME II-like set.

Each model trains through merkit's engine for its kind (`merkit.training.base.engine_for`) on the
input it declares: onset-apex flow maps for ConVAT, CABM and HOOF + SVM, grey frame sequences for
C3D-GRU and LBP-TOP + SVM, and for ICIP 2024 and MOL the input and recipe of their `default`
(CPU-sized) recipe, MOL's sequences with its TV-L1 + dlib targets packed beside the frames.
Prints one JSON line per model: pooled UF1 / UAR over the LOSO folds, and seconds (training +
prediction; data generation and preparation are on a separate line).

Usage: python benchmarks/family_synthetic.py [--subjects 8] [--clips 10] [--models convat,...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from merkit.data.registry import load_dataset
from merkit.evaluation.metrics import uar, uf1
from merkit.evaluation.splitters import LeaveOneSubjectOut
from merkit.models import get_descriptor
from merkit.models.inputs import check_input, model_input, packs_targets
from merkit.preprocess.pipeline import PrepareConfig, prepare
from merkit.preprocess.targets import pack_sequences
from merkit.synthetic.dataset import SyntheticConfig, generate_casme2_like
from merkit.training.base import engine_for
from merkit.training.recipe import AugmentConfig, Recipe, default_recipe

SEQUENCE = PrepareConfig(output="sequence", size=64, frames=6)
# Motion of 0.75-1.5 px in the 64 px frames (the default 0.4-1.1 px is near the noise floor of
# raw-frame models trained on 70 clips; the flow models do well at either).
AMPLITUDE = (1.5, 3.0)
FLOW = PrepareConfig(output="maps", size=28, flow="farneback")
# Sequences are grey images: a flip must not touch channel 0 (the engine's flip is flow-aware).
STILL = AugmentConfig(hflip=False, max_shift=2)
RECIPES = {
    "cabm": Recipe(model="cabm", epochs=30, batch_size=16, lr=2e-3),
    "convat": Recipe(model="convat", epochs=20, batch_size=16, lr=2e-3, weight_decay=0.05),
    "c3dgru": Recipe(model="c3dgru", epochs=20, batch_size=16, lr=3e-3, augment=STILL),
    "icip24": default_recipe("icip24"),
    "mol": default_recipe("mol"),
    "hoof-svm": default_recipe("hoof-svm"),
    "lbptop-svm": default_recipe("lbptop-svm"),
}
# What each model is prepared as (the faithful models: their default recipe's input).
INPUTS = {
    "cabm": FLOW,
    "convat": FLOW,
    "c3dgru": SEQUENCE,
    "icip24": PrepareConfig(**get_descriptor("icip24").prepare_keys()),
    "mol": PrepareConfig(**get_descriptor("mol").prepare_keys()),
    "hoof-svm": FLOW,
    "lbptop-svm": SEQUENCE,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument(
        "--models", default="convat,c3dgru,icip24,mol", help="also: cabm, hoof-svm, lbptop-svm"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs")
    parser.add_argument("--set", action="append", default=[], help="model kwarg KEY=VALUE (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        config = SyntheticConfig(
            n_subjects=args.subjects,
            clips_per_subject=args.clips,
            size=64,
            amplitude_px=AMPLITUDE,
            seed=args.seed,
        )
        dataset = load_dataset("casme2", generate_casme2_like(Path(tmp), config), "5class")
        inputs = {}
        for name in args.models.split(","):
            prepared = prepare(dataset.samples, INPUTS[name], workers=1, progress=False)
            x = prepared.x
            if packs_targets(name):
                x = pack_sequences(x)  # cropped release: margin 0 (the box is the frame)
            inputs[name] = (prepared, x)
        data_s = time.perf_counter() - start
    print(
        json.dumps({"benchmark": "family_synthetic", "stage": "data", "seconds": round(data_s, 1)})
    )

    for name in args.models.split(","):
        recipe = RECIPES[name]
        entry = get_descriptor(name)
        if args.epochs and not entry.closed_form:
            recipe.epochs = args.epochs
        for item in args.set:
            key, value = item.split("=", 1)
            recipe.model_kwargs[key] = json.loads(value)
        prepared, x = inputs[name]
        check_input(name, x.shape, INPUTS[name].output, **recipe.model_kwargs)
        samples = prepared.samples
        y = np.asarray([s.label for s in samples])
        folds = list(LeaveOneSubjectOut().split(samples))
        start = time.perf_counter()
        engine = engine_for(recipe)
        probs = engine.fit_predict(
            recipe, model_input(x), y, folds, len(dataset.class_names), args.seed
        )
        pred = np.empty(len(y), dtype=np.int64)
        for (_, test), p in zip(folds, probs, strict=True):
            pred[test] = p.argmax(1)
        row = {
            "benchmark": "family_synthetic",
            "model": name,
            "input": "x".join(map(str, x.shape[1:])),
            "samples": len(y),
            "folds": len(folds),
            "classes": len(dataset.class_names),
            "uf1": round(uf1(y, pred, len(dataset.class_names)), 4),
            "uar": round(uar(y, pred, len(dataset.class_names)), 4),
            "chance_uar": round(1 / len(dataset.class_names), 4),
            "seconds": round(time.perf_counter() - start, 1),
            "epochs": None if entry.closed_form else recipe.epochs,
            "model_kwargs": recipe.model_kwargs,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
