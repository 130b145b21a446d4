"""Apex spotting against the synthetic generator's truth, and what it costs; one JSON line.

Sets (12 subjects x 10 clips each, seed 0):
- demo: `merkit demo`'s data (onset..offset clips of 24-36 frames at 200 fps, 0.3-0.9 px head
  drift, a blink per 100 frames, habitual twitches), spotted in onset..offset as `prepare` does;
- long: clips twice as long with the expression anywhere inside and the drift doubled, spotted
  in every frame of the clip as `predict` does (`merkit.preprocess.spotting.locate`);
- recording: three times as long and the drift tripled: 72-108 frames, most of them two
  spotting windows (80 frames) or more, where `predict` references each frame to the frames a
  window away and times the movement with its template fit;
- low: the demo's clips at a quarter of the amplitude (0.2-0.55 px);
- blinky: the demo's clips with four times the blink rate.
Every clip is scored against the apex the generator drew (the sheet hides two as "/"). Per set
and method: median and mean absolute error (frames), share within +-3 frames, share on a clip
edge, mean confidence.

Time: the spotting stage of `merkit predict` on a 120-frame 640x480 H.264 clip (decoding all
frames, aligning them, spotting), with each method; "first-frame" is the earlier spotting, so
the difference is what the new spotting adds. Also `spot` alone on the 120 aligned faces (CPU).

Usage: python benchmarks/spotting_accuracy.py [--sets demo,long,recording,low,blinky]
         [--methods ...] [--data DIR] (DIR keeps the generated sets between runs)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from merkit.data.registry import load_dataset
from merkit.evaluation.spotting import spotting_metrics
from merkit.evaluation.spotting_runner import SpotSettings, spot_samples
from merkit.inference import Predictor
from merkit.inference.predictor import read_input
from merkit.preprocess import clip as clip_stage
from merkit.preprocess.config import SPOTTING_METHODS, PrepareConfig
from merkit.preprocess.spotting import spot
from merkit.synthetic.dataset import SyntheticConfig, generate_casme2_like, with_true_apex
from predict_speed import checkpoint, face_video

DEMO = SyntheticConfig()
SETS = {
    "demo": (DEMO, False),
    "long": (SyntheticConfig(context=1.0, drift_px=2.0 * DEMO.drift_px), True),
    "recording": (SyntheticConfig(context=2.0, drift_px=3.0 * DEMO.drift_px), True),
    "low": (SyntheticConfig(amplitude_px=(0.2, 0.55)), False),
    "blinky": (SyntheticConfig(blink_rate=4.0 * DEMO.blink_rate), False),
}
KEYS = ("median_abs_error_frames", "mean_abs_error_frames", "within_3_frames", "on_clip_edge")


def score_set(root: Path, whole_clip: bool, methods: tuple[str, ...]) -> dict[str, dict]:
    samples = with_true_apex(load_dataset("casme2", root, "all").samples, root)
    settings = SpotSettings(methods, whole_clip, prepare=PrepareConfig(aligned=True))
    rows, failed = spot_samples(samples, settings, workers=1)
    if failed:
        raise SystemExit(f"spotting failed on {failed[0]}")
    figures = spotting_metrics(rows)
    keep = (*KEYS, "mean_confidence", "n")
    return {m: {k: figures[m]["overall"][k] for k in keep} for m in methods}


def predict_stage_ms(video: Path, model: Path, methods: tuple[str, ...], repeats: int) -> dict:
    """Median milliseconds of predict's spotting stage with each method."""
    predictor = Predictor.load(model)
    out = {}
    for method in methods:
        predictor.predict(video, spotting=method)  # warm-up (models, caches)
        runs = [predictor.predict(video, spotting=method) for _ in range(repeats)]
        out[method] = round(statistics.median(r["timings_ms"]["spotting"] for r in runs), 1)
    return out


def spot_cpu_ms(video: Path, methods: tuple[str, ...], repeats: int) -> dict:
    """CPU milliseconds of `spot` alone on the video's 120 aligned faces (200 fps)."""
    clip = read_input(video)
    config = PrepareConfig()
    first = clip.numbers[0]
    alignment = clip_stage.align_clip(clip.sample, clip.frames, first, config)
    faces = alignment.apply_all(np.stack(clip.frames.read()))
    out = {}
    for method in methods:
        spot(faces, method, 200.0)
        start = time.process_time()
        for _ in range(repeats):
            spot(faces, method, 200.0)
        out[method] = round((time.process_time() - start) / repeats * 1000, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--methods", default=",".join(SPOTTING_METHODS))
    parser.add_argument("--data", type=Path, default=None, help="keep generated sets here")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    methods = tuple(args.methods.split(","))
    figures: dict[str, object] = {"benchmark": "spotting_accuracy", "methods": list(methods)}
    with tempfile.TemporaryDirectory() as tmp:
        base = args.data or Path(tmp)
        for name in args.sets.split(","):
            config, whole_clip = SETS[name]
            root = generate_casme2_like(base / name, config)
            start = time.perf_counter()
            figures[name] = score_set(root, whole_clip, methods)
            figures[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
        video = face_video(Path(tmp) / "clip.mp4", 120)
        model = checkpoint(Path(tmp) / "model.pt", "dis")
        fast = tuple(m for m in methods if m != "flow")  # flow: seconds, not milliseconds
        figures["predict_spotting_stage_ms_120x640x480"] = predict_stage_ms(
            video, model, fast, args.repeats
        )
        figures["spot_cpu_ms_120_faces"] = spot_cpu_ms(video, methods, args.repeats)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
