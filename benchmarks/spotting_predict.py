"""`merkit predict` with spotting against `predict` given the true onset and apex; one JSON line.

The new user's path of issue 20: `merkit demo`'s data, `merkit fit --data casme2 --root DATA --out
model.pt` (cabm, its shipped recipe, seed `--seed`, 0 by default), then `merkit predict model.pt
DATA/Cropped/*/* --aligned`, once spotting the apex and once given the generator's true onset and
apex. Figures: the share of clips right with the true apex that spotting also gets right, each way's
accuracy, the spotted apex's error and the mean spotting confidence. For reference, the same share
when predict is given the true apex moved by one frame (each way): how much the model itself depends
on which frame near the apex it sees. Apexes of the spotting method `--spotting` (default: the
checkpoint's, i.e. merkit's default). `--fit-apex spotted` fits the model on the apexes spotted by
that method (`merkit fit --apex-policy spot`), so that training and prediction see inputs made the
same way; `annotated` (the default) fits it on the sheet's apexes.

Usage: python benchmarks/spotting_predict.py [--data DIR] [--spotting METHOD]
    [--fit-apex annotated|spotted] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from merkit.inference import Predictor
from merkit.inference.predictor import predict_many
from merkit.models import get_descriptor
from merkit.preprocess.config import DEFAULT_SPOTTING, PrepareConfig
from merkit.synthetic.dataset import TRUTH_NAME, SyntheticConfig, generate_casme2_like
from merkit.training.config import build_experiment
from merkit.training.fit import fit_final

FIT_APEX = {"annotated": "annotated", "spotted": "spot"}  # --fit-apex -> PrepareConfig.apex_policy


def apex_frame(row: Any, shift: int) -> int:
    """The true apex's frame number moved by `shift`, kept after the onset and inside the clip."""
    return int(row.first_frame) + min(max(int(row.apex) + shift, 1), int(row.n_frames) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="demo data folder (made if absent)")
    parser.add_argument("--spotting", default=None)
    parser.add_argument("--fit-apex", choices=tuple(FIT_APEX), default="annotated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = PrepareConfig(
        **get_descriptor("cabm").prepare_keys(),
        apex_policy=FIT_APEX[args.fit_apex],
        spotting=args.spotting or DEFAULT_SPOTTING,
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_casme2_like(args.data or Path(tmp) / "data", SyntheticConfig())
        start = time.perf_counter()
        model = Path(tmp) / "model.pt"
        experiment = build_experiment(
            overrides={
                "data.name": "casme2",
                "data.root": str(root),
                "recipe.model": "cabm",
                "prepare": dataclasses.asdict(config),
                "seeds": [args.seed],
                "workers": args.workers,
            }
        )
        fit_final(experiment, out=model, progress=False)
        fit_s = time.perf_counter() - start
        truth = pd.read_csv(root / TRUTH_NAME)
        folders = [root / "Cropped" / r.subject / r.filename for r in truth.itertuples()]
        start = time.perf_counter()
        spotted = predict_many(
            model, folders, args.workers, aligned=True, spotting=args.spotting, window=None
        )
        predict_s = time.perf_counter() - start
        predictor = Predictor.load(model)
        given = {
            shift: [
                predictor.predict(folder, int(r.first_frame), apex_frame(r, shift), aligned=True)
                for folder, r in zip(folders, truth.itertuples(), strict=True)
            ]
            for shift in (0, -1, 1)
        }
    bad = [o for o in spotted if isinstance(o, str)]
    if bad:
        raise SystemExit(f"predict failed: {bad[0]}")
    emotions = list(truth["emotion"])

    def right(outcomes: list[dict]) -> np.ndarray:
        return np.array([o["predicted"] == e for o, e in zip(outcomes, emotions, strict=True)])

    right_spotted, right_given = right(spotted), right(given[0])
    shifted = np.concatenate([right(given[-1])[right_given], right(given[1])[right_given]])
    errors = np.abs([o["apex"] - (r.first_frame + r.apex) for o, r in
                     zip(spotted, truth.itertuples(), strict=True)])  # fmt: skip
    figures = {
        "benchmark": "spotting_predict",
        "clips": len(truth),
        "spotting": spotted[0]["spotting"]["method"],
        "fit_apex": args.fit_apex,
        "seed": args.seed,
        "right_with_spotting_among_right_with_true_apex": round(
            float(right_spotted[right_given].mean()), 4
        ),
        # the reference: the true apex moved by one frame (either way), with no spotting at all
        "right_with_true_apex_moved_1_frame_among_right_with_true_apex": round(
            float(shifted.mean()), 4
        ),
        "accuracy_spotted_apex": round(float(right_spotted.mean()), 4),
        "accuracy_true_apex": round(float(right_given.mean()), 4),
        "apex_median_abs_error_frames": float(np.median(errors)),
        "apex_within_3_frames": round(float((errors <= 3).mean()), 4),
        "mean_spotting_confidence": round(
            float(np.mean([o["spotting"]["confidence"] for o in spotted])), 4
        ),
        "fit_seconds": round(fit_s, 1),
        "predict_seconds": round(predict_s, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
