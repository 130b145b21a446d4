"""How long apex spotting takes inside `merkit predict`; one JSON line of medians.

- `spotting_ms_100x224`: predict's spotting stage (gray frames aligned to the 128 px crop, the
  apex spotted, onset and offset fitted) on a 100-frame clip of a 224 px face (a photograph,
  scikit-image's astronaut, moved by a mouth action unit), `--aligned`, once warm;
- `spotting_ms_300x640x480`: the same on 300 frames at 640x480 where the face is found first;
- `one_clip_call_ms`: a whole `merkit predict MODEL CLIP` process on one of the demo's clips
  (100 frames of a drawn 128 px face at 200 fps, as `merkit demo` writes them; the model is an
  untrained cabm with the demo's preparation, its weights do not change the time): the
  `timings_ms` it prints, per stage, warm-up included;
- `five_clip_call_ms`: one process on five such clips: each clip's `timings_ms`.
Medians over `--repeats` runs (processes, for the calls).

Usage: python benchmarks/spotting_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before NumPy: one thread, comparable timings

import cv2
import numpy as np
import torch

from merkit.inference import CheckpointMeta, Predictor, save_checkpoint
from merkit.inference.checkpoint import input_spec_of
from merkit.models import create_model
from merkit.preprocess.config import PrepareConfig
from merkit.synthetic.clips import displacement_field
from merkit.synthetic.dataset import write_synthetic_video, write_video
from merkit.synthetic.spec import ClipSpec, episode_profile
from predict_speed import face_video

CLASSES = ("happiness", "surprise", "disgust", "repression", "others")
ASTRONAUT_FACE = (slice(40, 264), slice(110, 334))  # the astronaut's head, 224 px
MOUTH_CORNERS = {"mouth_corner_L": (140.0, 150.0), "mouth_corner_R": (95.0, 150.0)}


def demo_checkpoint(path: Path) -> Path:
    """An untrained cabm whose preparation is the demo's (Farneback flow, aligned crops)."""
    config = PrepareConfig(flow="farneback", aligned=True)
    meta = CheckpointMeta(
        model="cabm",
        model_kwargs={},
        num_classes=len(CLASSES),
        in_chans=3,
        class_names=CLASSES,
        input_spec=dataclasses.asdict(input_spec_of(config)),
        prepare=dataclasses.asdict(config),
    )
    torch.manual_seed(0)
    save_checkpoint(path, create_model("cabm", len(CLASSES)).eval(), meta)
    return path


def face_224(path: Path, frames: int) -> Path:
    """The astronaut's head as a 224 px crop, lip corners pulled by 2 px over 250 ms."""
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[ASTRONAUT_FACE].astype(np.float32)
    y, x = np.mgrid[0:224, 0:224].astype(np.float32)
    anchors = {k: np.array(v, np.float32) for k, v in MOUTH_CORNERS.items()}
    field = displacement_field("12", anchors, 2.0, (x, y))
    spec = ClipSpec("speed", 200.0, frames, frames // 3, frames // 2, frames // 3 + 50, "12", 2.0)
    clip = [
        cv2.remap(face, x - a * field[0], y - a * field[1], cv2.INTER_CUBIC)
        for a in episode_profile(spec)
    ]
    return write_video(path, np.clip(np.stack(clip), 0, 255).astype(np.uint8), fps=200.0)


def stage_ms(predictor: Predictor, video: Path, repeats: int, aligned: bool) -> float:
    """Median milliseconds of predict's spotting stage, after one warm-up run."""
    predictor.predict(video, aligned=aligned)
    runs = [predictor.predict(video, aligned=aligned)["timings_ms"] for _ in range(repeats)]
    return round(statistics.median(r["spotting"] for r in runs), 1)


def call_ms(model: Path, clips: list[Path], repeats: int) -> list[dict[str, float]]:
    """Median `timings_ms` per clip of `repeats` fresh `merkit predict` processes."""
    command = [str(Path(sys.executable).with_name("merkit")), "predict", str(model), "--json", "-"]
    command += [str(c) for c in clips]
    runs = []
    for _ in range(repeats):
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        result = json.loads(out)
        runs.append([r["timings_ms"] for r in (result if isinstance(result, list) else [result])])
    stages = runs[0][0].keys()
    return [
        {s: round(statistics.median(run[i][s] for run in runs), 1) for s in stages}
        for i in range(len(clips))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    figures: dict[str, object] = {"benchmark": "spotting_speed", "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        model = demo_checkpoint(Path(tmp) / "model.pt")
        predictor = Predictor.load(model)
        small = face_224(Path(tmp) / "face224.mp4", 100)
        figures["spotting_ms_100x224"] = stage_ms(predictor, small, args.repeats, aligned=True)
        big = face_video(Path(tmp) / "face640.mp4", 300)
        figures["spotting_ms_300x640x480"] = stage_ms(predictor, big, args.repeats, aligned=False)
        clips = [Path(tmp) / f"{c}.mp4" for c in CLASSES]
        for i, (clip, emotion) in enumerate(zip(clips, CLASSES, strict=True)):
            write_synthetic_video(clip, emotion, subject=13 + i, n_frames=100, onset=30,
                                  apex=45, offset=70)  # fmt: skip
        figures["one_clip_call_ms"] = call_ms(model, clips[:1], args.repeats)[0]
        figures["five_clip_call_ms"] = call_ms(model, clips, args.repeats)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
