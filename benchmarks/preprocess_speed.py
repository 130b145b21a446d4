"""Preprocessing speed: ms per clip for each flow method and for the face stage.

Prints one JSON line. The clip is realistic in size: two 280x340 frames (the size of a CASME II
cropped face) cut from scikit-image's astronaut, the second with a small smooth warp around the
mouth (about 1.5 px, a micro-expression's amplitude). The face stage is detection + 68 landmarks
+ alignment + warping both frames, on the full 512x512 photograph.

    .venv/bin/python benchmarks/preprocess_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import cv2
import numpy as np
from skimage import data

from merkit.preprocess.face import estimate_alignment
from merkit.preprocess.flow import FLOW_METHODS, compute_flow, motion_maps


def mouth_warp(image: np.ndarray, amount: float, centre: tuple[float, float]) -> np.ndarray:
    height, width = image.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    weight = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * 20.0**2))
    map_y = (ys + amount * weight).astype(np.float32)
    return cv2.remap(image, xs, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of `repeats` timed calls after one warm-up (the machine is shared)."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(1000 * min(times), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    onset = cv2.resize(photo[20:360, 100:380], (280, 340))  # width 280, height 340
    apex = mouth_warp(onset, -1.5, centre=(140.0, 200.0))

    result: dict[str, object] = {"benchmark": "preprocess_speed", "frame": "280x340"}
    for method in FLOW_METHODS:
        result[f"flow_{method}_ms"] = best_ms(
            lambda m=method: motion_maps(compute_flow(onset, apex, m), 28), args.repeats
        )

    def face_stage() -> None:
        alignment = estimate_alignment(photo, 128, 0.1)
        alignment.apply(photo), alignment.apply(photo)

    result["face_ms"] = best_ms(face_stage, args.repeats)
    result.update(repeats=args.repeats, threads=1, cpu=platform.processor() or platform.machine())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
