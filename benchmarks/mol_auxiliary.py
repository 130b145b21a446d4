"""MOL's auxiliary outputs against the truth of synthetic clips, beside classic optical flow.

A synthetic CASME II-like set is written to disk and run through `merkit train`'s code path
(`run_experiment`: loader, preparation, TV-L1 + dlib targets packed beside the frames, LOSO with
the `mol` default recipe) into a real run folder. The generator knows every clip's true motion
and landmarks (`merkit.synthetic.truth.ClipMotion`), so on each held-out subject's clips this
measures, in the model's centre crop:

- the end-point error (px) of MOL's flow head, of TV-L1 (its training target: computed on the
  whole frame, then cropped), of TV-L1 run on the crop itself (the authors' way), of Farneback
  and DIS, and of zero flow (the mean true motion), all against the true displacement;
- the landmark NME of MOL's landmark head and of dlib's points (its training target) against the
  true 68 points (`merkit.synthetic.faces.face_points68`);
- each head against the target it was trained on.

The figures go into the run folder (`aux_metrics.json`, a table in report.md/html) and one JSON
line is printed. Usage:
    python benchmarks/mol_auxiliary.py [--subjects 8] [--clips 10] [--out runs/mol_auxiliary]
        [--threads 2] [--epochs N]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from merkit.data.registry import load_dataset
from merkit.evaluation.auxiliary import end_point_error, landmark_nme
from merkit.evaluation.report import render_run
from merkit.evaluation.run_folder import RunFolder
from merkit.models.layers import unstack_frames
from merkit.preprocess.flow import compute_flow
from merkit.preprocess.pipeline import prepare
from merkit.preprocess.targets import plane_landmarks
from merkit.synthetic.clips import render_clip_motion
from merkit.synthetic.dataset import TRUTH_NAME, generate_casme2_like
from merkit.synthetic.population import SyntheticConfig, make_subject
from merkit.training.config import ExperimentConfig
from merkit.training.engine import TorchEngine
from merkit.training.runner import run_experiment

AMPLITUDE = (1.5, 3.0)  # as benchmarks/family_synthetic.py: 0.75-1.5 px in 64 px frames


class HeadRecorder:
    """An `Engine` for `run_experiment`: per fold a final model on the training side (the torch
    engine's `fit`), whose class probabilities it returns (bare, without curves) and whose flow
    and landmark outputs it keeps."""

    def __init__(self) -> None:
        self.torch = TorchEngine()
        self.x: np.ndarray | None = None
        self.heads: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def fit(self, recipe, x, y, num_classes, seed=0, *, progress=None):  # noqa: ANN001, ANN201
        return self.torch.fit(recipe, x, y, num_classes, seed, progress=progress)

    def fit_predict(self, recipe, x, y, folds, num_classes, seed=0, **_):  # noqa: ANN001, ANN003, ANN201
        self.x = x
        probs = []
        for train, test in folds:
            model = self.fit(recipe, x[train], y[train], num_classes, seed).eval()
            with torch.no_grad():
                logits, flow, marks, offsets = model.forward_heads(torch.from_numpy(x[test]))
            for k, index in enumerate(test):
                self.heads[int(index)] = (flow[k].numpy(), marks[k].numpy(), offsets[k].numpy())
            probs.append(logits.softmax(-1).numpy())
        return probs


def clip_truth(
    root: Path, config: SyntheticConfig, frames: int, size: int
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Per (subject, clip) the true flow between consecutive prepared frames (T-1, 2, S, S) and
    the true landmarks of every prepared frame (T, 68, 2), at the prepared size `size`."""
    with (root / TRUTH_NAME).open() as handle:
        rows = list(csv.DictReader(handle))
    scale = size / config.size
    truth, seen = {}, {}
    for row in rows:
        number = int(row["subject"][3:])
        clip = seen.setdefault(number, 0)
        seen[number] += 1
        _, _, motion = render_clip_motion(
            row["emotion"], make_subject(number, config), clip, config
        )
        picks = np.linspace(0, int(row["n_frames"]) - 1, frames).round().astype(int)
        flows = [motion.flow(a, b) for a, b in zip(picks[:-1], picks[1:], strict=True)]
        flows = np.stack([_resized(f, size) * scale for f in flows])
        points = (motion.track()[picks] + 0.5) * scale - 0.5  # pixel centres stay centres
        truth[row["subject"], row["filename"]] = (flows, points)
    return truth


def _resized(flow: np.ndarray, size: int) -> np.ndarray:
    if flow.shape[-1] == size:
        return flow
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in flow])


MOVING = 0.1  # px: the second EPE counts only pixels whose true motion reaches this


def _epe_rows(output: str, pred: np.ndarray, truth: np.ndarray, against: str) -> list[dict]:
    """EPE over every pixel and over the moving ones."""
    return [
        {
            "output": output,
            "measure": "EPE (px)",
            "value": end_point_error(pred, truth),
            "against": against,
        },
        {
            "output": output,
            "measure": f"EPE where moving >= {MOVING} px",
            "value": end_point_error(pred, truth, MOVING),
            "against": against,
        },
    ]


def _nme_row(output: str, pred: np.ndarray, truth: np.ndarray, against: str) -> dict:
    return {
        "output": output,
        "measure": "NME",
        "value": landmark_nme(pred, truth),
        "against": against,
    }


def _pair_flows(frames: np.ndarray, method: str) -> np.ndarray:
    """(T-1, 2, H, W) flow between consecutive grey frames (T, H, W)."""
    pairs = zip(frames[:-1], frames[1:], strict=True)
    return np.stack([compute_flow(a, b, method).transpose(2, 0, 1) for a, b in pairs])


def measure(
    recorder: HeadRecorder, keys: list[tuple[str, str]], truth: dict, crop: int
) -> list[dict[str, object]]:
    """The table's rows, every held-out clip pooled; flows compared in the centre crop."""
    x = unstack_frames(torch.from_numpy(recorder.x), 4).numpy()  # (N, T, 4, S, S)
    start = (x.shape[-1] - crop) // 2
    inner = (..., slice(start, start + crop), slice(start, start + crop))
    fields: dict[str, list[np.ndarray]] = {
        "MOL flow head": [], "TV-L1 (target)": [], "TV-L1 on the crop": [], "Farneback": [],
        "DIS": [], "true": [],
    }  # fmt: skip
    points: dict[str, list[np.ndarray]] = {"MOL landmark head": [], "dlib (target)": [], "true": []}
    for index, key in enumerate(keys):
        flow, marks, offsets = recorder.heads[index]
        true_flows, true_points = truth[key]
        gray = x[index, :, 0]
        fields["MOL flow head"].append(flow)
        fields["TV-L1 (target)"].append(x[index, 1:, 1:3][inner])
        fields["TV-L1 on the crop"].append(_pair_flows(gray[inner], "tvl1"))
        fields["Farneback"].append(_pair_flows(gray, "farneback")[inner])
        fields["DIS"].append(_pair_flows(gray, "dis")[inner])
        fields["true"].append(true_flows[inner])
        points["MOL landmark head"].append(marks + offsets[::-1].astype(np.float32))  # frame px
        points["dlib (target)"].append(np.stack([plane_landmarks(p) for p in x[index, 1:, 3]]))
        points["true"].append(true_points[1:])  # the head predicts frames 1..T-1
    flows = {name: np.stack(items) for name, items in fields.items()}
    marks = {name: np.stack(items) for name, items in points.items()}
    true_flow, true_marks = flows.pop("true"), marks.pop("true")
    rows = [
        row for name, f in flows.items() for row in _epe_rows(name, f, true_flow, "true motion")
    ]
    rows += _epe_rows("zero flow", np.zeros_like(true_flow), true_flow, "true motion")
    rows += _epe_rows(
        "MOL flow head", flows["MOL flow head"], flows["TV-L1 (target)"], "TV-L1 (its target)"
    )
    rows += [_nme_row(name, found, true_marks, "true landmarks") for name, found in marks.items()]
    rows.append(
        _nme_row(
            "MOL landmark head",
            marks["MOL landmark head"],
            marks["dlib (target)"],
            "dlib (its target)",
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/mol_auxiliary"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = SyntheticConfig(
            n_subjects=args.subjects,
            clips_per_subject=args.clips,
            size=64,
            amplitude_px=AMPLITUDE,
            seed=args.seed,
        )
        root = generate_casme2_like(Path(tmp) / "data", synthetic)
        recipe = {"model": "mol", **({"epochs": args.epochs} if args.epochs else {})}
        experiment = ExperimentConfig.from_dict(
            {
                "data": {"name": "casme2", "root": str(root), "taxonomy": "5class"},
                "recipe": recipe,
                "seeds": [args.seed],
                "cache_dir": str(Path(tmp) / "cache"),
            }
        )
        recorder = HeadRecorder()
        result = run_experiment(
            experiment, args.out, engine=recorder, overwrite=True, progress=False
        )
        dataset = load_dataset("casme2", root, "5class")
        prepared = prepare(
            dataset.samples, experiment.prepare, cache_dir=Path(tmp) / "cache", progress=False
        )
        keys = [(s.subject, s.clip) for s in prepared.samples]
        truth = clip_truth(root, synthetic, experiment.prepare.frames, experiment.prepare.size)
    crop = experiment.recipe.model_kwargs.get("crop", 128)
    rows = measure(recorder, keys, truth, crop)
    note = (
        f"Held-out clips of a {args.subjects}-subject synthetic LOSO run, each model trained on "
        f"the other subjects; the centre {crop} px crop of {experiment.prepare.size} px frames, "
        f"{experiment.prepare.frames} frames per clip (benchmarks/mol_auxiliary.py)."
    )
    RunFolder(args.out).write_aux(rows, note)
    render_run(args.out)
    line = {
        "benchmark": "mol_auxiliary",
        "samples": len(keys),
        "uf1": round(result.metrics["overall"]["uf1"], 4),
        "uar": round(result.metrics["overall"]["uar"], 4),
        "epochs": experiment.recipe.epochs,
        "seconds": round(time.perf_counter() - start, 1),
        **{f"{r['output']} vs {r['against']} {r['measure']}": round(r["value"], 4) for r in rows},
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
