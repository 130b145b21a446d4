"""End-to-end `merkit predict` time per clip (read, face, spotting, flow, model); one JSON line.

The clip is a real face (scikit-image's astronaut) on a 640x480 frame, CASME II's raw size, whose
mouth region moves by a few pixels from frame 40 to 90 of 120, written as H.264 mp4: so the face
is detected and aligned, the expression spotted, then flow and CABM-FMER run, with TV-L1 and DIS.
The model is untrained (its weights do not change the time). One thread, to be comparable.

Usage: python benchmarks/predict_speed.py [--frames 120] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

from merkit.inference import CheckpointMeta, Predictor, save_checkpoint
from merkit.inference.checkpoint import input_spec_of
from merkit.models import create_model
from merkit.preprocess.pipeline import PrepareConfig
from merkit.synthetic.clips import temporal_profile
from merkit.synthetic.dataset import write_video

MOUTH = (228.0, 160.0)  # (x, y) of the astronaut's mouth in the 512x512 photograph
STAGES = ("read", "face", "spotting", "motion", "model", "total")


def face_video(path: Path, frames: int, peak_px: float = 3.0) -> Path:
    """The astronaut centred on a 640x480 frame, mouth raised by up to `peak_px` pixels."""
    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    canvas = np.full((480, 640), 90, np.uint8)
    canvas[:, 64:576] = face[16:496]
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float32)
    centre_x, centre_y = MOUTH[0] + 64, MOUTH[1] - 16
    window = np.exp(-((xs - centre_x) ** 2 + (ys - centre_y) ** 2) / (2 * 18.0**2))
    profile = temporal_profile(frames, frames // 3, frames // 2, 3 * frames // 4)
    clip = [
        cv2.remap(canvas, xs, ys + peak_px * float(a) * window, cv2.INTER_CUBIC) for a in profile
    ]
    return write_video(path, np.stack(clip), fps=200.0)


def checkpoint(path: Path, flow: str) -> Path:
    """An untrained full-size CABM-FMER whose preprocessing uses `flow`."""
    config = PrepareConfig(flow=flow)
    meta = CheckpointMeta(
        model="cabm",
        model_kwargs={},
        num_classes=3,
        in_chans=3,
        class_names=("negative", "positive", "surprise"),
        input_spec=dataclasses.asdict(input_spec_of(config)),
        prepare=dataclasses.asdict(config),
    )
    torch.manual_seed(0)
    save_checkpoint(path, create_model("cabm", 3).eval(), meta)
    return path


def measure(predictor: Predictor, video: Path, repeats: int) -> dict[str, float]:
    """Median milliseconds per stage over `repeats` runs, after one warm-up run."""
    predictor.predict(video)
    runs = [predictor.predict(video)["timings_ms"] for _ in range(repeats)]
    return {stage: round(statistics.median(r[stage] for r in runs), 1) for stage in STAGES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    figures: dict[str, object] = {"benchmark": "predict_speed", "frames": args.frames,
                                  "frame_size": "640x480", "model": "cabm"}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        video = face_video(Path(tmp) / "clip.mp4", args.frames)
        for flow in ("tvl1", "dis"):
            predictor = Predictor.load(checkpoint(Path(tmp) / f"{flow}.pt", flow))
            figures[f"{flow}_ms"] = measure(predictor, video, args.repeats)
            result = predictor.predict(video)
            figures[f"{flow}_timing"] = [result["onset"], result["apex"], result["offset"]]
    figures["truth_timing"] = [args.frames // 3, args.frames // 2, 3 * args.frames // 4]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
