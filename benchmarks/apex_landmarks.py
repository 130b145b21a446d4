"""Five facial points on the MEGC2019 apex faces: how each way of running the face stage fares.

    python benchmarks/apex_landmarks.py --root ../shared/data/megc2019 [--limit N]

The apex faces are tight 224x224 crops, which a scene face detector can miss. For each
detection strategy (merkit's `detect_face` on the image as is, framed by a flat border,
enlarged 2x) it counts the faces found and how far their five points lie from those the shape
predictor gives with the whole image as the face box (mean point distance in inter-ocular
distances: median, 95th percentile, and how many lie beyond 0.1). Then it runs the shipped
`find_points` and counts its sources (detected / whole image as the face box / HTNet fallback).
Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from merkit.preprocess.landmarks import (
    POINT_SOURCES,
    PointsConfig,
    detected_points,
    find_points,
    plausible,
    read_gray,
    whole_image_points,
)

STRATEGIES = {
    "as is": PointsConfig(upsample=1.0, border=0.0),
    "border 15%": PointsConfig(upsample=1.0, border=0.15),
    "enlarged 2x": PointsConfig(upsample=2.0, border=0.0),
}
OFF = 0.1  # inter-ocular distances


def distance(points: np.ndarray, reference: np.ndarray) -> float:
    """Mean point distance in inter-ocular distances of the reference."""
    iod = float(np.hypot(*(reference[1] - reference[0])))
    return float(np.linalg.norm(points - reference, axis=1).mean() / iod)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder holding apex/")
    parser.add_argument("--limit", type=int, default=None, help="only the first N faces")
    args = parser.parse_args(argv)
    paths = sorted((args.root / "apex").glob("*.jpg"))[: args.limit]
    started = time.perf_counter()
    found: dict[str, list[float]] = {name: [] for name in STRATEGIES}
    sources = dict.fromkeys(POINT_SOURCES, 0)
    for path in paths:
        gray = read_gray(path)
        reference = whole_image_points(gray)
        for name, config in STRATEGIES.items():
            points = detected_points(gray, config)
            if points is not None and plausible(points, gray.shape[1]):
                found[name].append(distance(points, reference))
        sources[find_points(gray)[1]] += 1
    line = {"faces": len(paths), "shipped": sources, "seconds": 0.0}
    for name, values in found.items():
        v = np.asarray(values)
        line[name] = {
            "found": len(v),
            "median": round(float(np.median(v)), 4) if len(v) else None,
            "p95": round(float(np.percentile(v, 95)), 4) if len(v) else None,
            f"beyond_{OFF}": int((v > OFF).sum()),
        }
    line["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
