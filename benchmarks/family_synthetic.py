"""ConVAT, C3D-GRU and MOL (and CABM and the classic SVMs for reference) under LOSO on a synthetic
CASME II-like set.

Each model trains through merkit's engine on the input it declares: onset-apex flow maps for
ConVAT, CABM and HOOF + SVM, grey frame sequences for C3D-GRU and LBP-TOP + SVM, sequences with
packed flow + landmark targets for MOL. The classic models (`hoof-svm`, `lbptop-svm`) are fitted
in closed form by `merkit.training.classic` with their shipped settings. Prints one JSON line
per model: pooled UF1 / UAR over the LOSO folds, and seconds (training + prediction; data
generation and preparation are reported on a separate line).

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
from merkit.data.synthetic import SyntheticConfig, generate_casme2_like
from merkit.evaluation.metrics import uar, uf1
from merkit.evaluation.splitters import LeaveOneSubjectOut
from merkit.models import get_model_entry
from merkit.models.inputs import check_input, model_input
from merkit.preprocess.pipeline import PrepareConfig, prepare
from merkit.preprocess.targets import pack_sequences
from merkit.training.classic import ClassicEngine
from merkit.training.engine import fit_predict
from merkit.training.recipe import AugmentConfig, Recipe, default_recipe

SEQUENCE = PrepareConfig(output="sequence", size=64, frames=6)
# Motion of 0.75-1.5 px in the 64 px frames (the default 0.4-1.1 px is near the noise floor of
# raw-frame models trained on 70 clips; the flow models do well at either).
AMPLITUDE = (1.5, 3.0)
FLOW = PrepareConfig(output="flow", size=28, flow="farneback")
# Sequences are grey images: a flip must not touch channel 0 (the engine's flip is flow-aware).
STILL = AugmentConfig(hflip=False, max_shift=2)
RECIPES = {
    "cabm": Recipe(model="cabm", epochs=30, batch_size=16, lr=2e-3),
    "convat": Recipe(model="convat", epochs=20, batch_size=16, lr=2e-3, weight_decay=0.05),
    "c3dgru": Recipe(model="c3dgru", epochs=20, batch_size=16, lr=3e-3, augment=STILL),
    "mol": Recipe(
        model="mol",
        epochs=40,
        batch_size=16,
        lr=3e-3,
        augment=STILL,
    ),
    "hoof-svm": default_recipe("hoof-svm"),
    "lbptop-svm": default_recipe("lbptop-svm"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument(
        "--models", default="convat,c3dgru,mol", help="also: cabm, hoof-svm, lbptop-svm"
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
        flow = prepare(dataset.samples, FLOW, workers=1, progress=False)
        seq = prepare(dataset.samples, SEQUENCE, workers=1, progress=False)
        packed = pack_sequences(seq.x)  # cropped release: margin 0 (the box is the frame)
        data_s = time.perf_counter() - start
    inputs = {"flow": (flow, flow.x), "sequence": (seq, seq.x)}
    print(
        json.dumps({"benchmark": "family_synthetic", "stage": "data", "seconds": round(data_s, 1)})
    )

    for name in args.models.split(","):
        recipe = RECIPES[name]
        entry = get_model_entry(name)
        if args.epochs and not entry.closed_form:
            recipe.epochs = args.epochs
        for item in args.set:
            key, value = item.split("=", 1)
            recipe.model_kwargs[key] = json.loads(value)
        kind = entry.input_spec.kind
        prepared, x = inputs[kind]
        x = packed if name == "mol" else x
        check_input(name, x.shape, kind, **recipe.model_kwargs)
        samples = prepared.samples
        y = np.asarray([s.label for s in samples])
        folds = list(LeaveOneSubjectOut().split(samples))
        start = time.perf_counter()
        engine = ClassicEngine().fit_predict if entry.closed_form else fit_predict
        probs = engine(recipe, model_input(x), y, folds, len(dataset.class_names), args.seed)
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
