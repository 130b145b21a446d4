"""Apex spotting on hard clips, per group, beside trivial baselines; one JSON line.

The groups of `merkit.synthetic.scenarios` (mouth, brow, eyelid, blink, drift, long30, low, jpeg,
filling), rendered on drawn faces (`--faces drawn`) and on face photographs warped the same way
(`--faces photo`, the photographs in `--photos`, e.g. MEGC2019's 224 px apex crops; each clip
takes another photograph, whose 68 landmarks dlib finds; never copied anywhere but the temporary
clip folders). Every group is written in CASME II's layout and scored exactly as
`merkit spot casme2 ROOT --span clip --aligned` scores it (`--fps 30` for long30; without
`--aligned` for filling, whose 640x480 frames need the face found), through
`merkit.evaluation.spotting_runner`, with `registered-difference` (merkit's default) and
`first-frame` (the largest difference from frame 0), and the middle frame of the clip.

Per face kind, group and method: clips, median absolute error (frames), share within 3 frames,
share within 10 % of the episode (onset to offset), share on the clip's first or last frame,
clips that failed (no face found), and milliseconds per clip (reading, aligning and spotting,
one process); and the same pooled over the groups.

Usage: python benchmarks/spotting_hard.py --photos DIR [--faces drawn,photo]
    [--groups mouth,...] [--clips 20] [--seed 1] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before NumPy: one thread, comparable timings

import cv2
import numpy as np
import pandas as pd

from merkit.data.registry import load_dataset
from merkit.evaluation.spotting_runner import SpotSettings, spot_samples
from merkit.preprocess.config import PrepareConfig
from merkit.preprocess.face import detect_face, face_landmarks
from merkit.synthetic.dataset import TRUTH_NAME
from merkit.synthetic.photo import render_photo_clip
from merkit.synthetic.scenarios import GROUPS, draw_spec, finish, render_drawn, write_clip_set

METHODS = ("registered-difference", "first-frame")
MIDDLE = "middle-frame"
SIZE = 224  # face crops of this side, as the photographs are


def photo_points(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A photograph in gray and its 68 landmarks (found on a padded copy), or None."""
    photo = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if photo is None:
        return None
    photo = cv2.resize(photo, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    pad = SIZE // 2
    padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    box = detect_face(padded)
    return None if box is None else (photo, face_landmarks(padded, box) - pad)


def render_group(
    kind: str, group: str, clips: int, seed: int, photos: list[Path]
) -> list[tuple[Any, str, np.ndarray]]:
    """`clips` clips of `group` on drawn faces or photographs: (spec, face name, frames)."""
    rng = np.random.default_rng([seed, GROUPS.index(group), int(kind == "photo")])
    order = iter(rng.permutation(len(photos))) if kind == "photo" else None
    out = []
    while len(out) < clips:
        spec = draw_spec(group, rng)
        if order is None:
            subject = int(rng.integers(1, 10_000))
            frames, name = render_drawn(spec, subject, SIZE, seed), f"drawn-{subject}"
        else:
            path = photos[next(order)]
            found = photo_points(path)
            if found is None:
                continue
            frames, name = render_photo_clip(*found, spec, rng), path.stem
        out.append((spec, name, finish(spec, frames)))
    return out


def score(root: Path, group: str, method: str) -> tuple[list[dict[str, Any]], float, int]:
    """Per clip: error, episode, edge; the milliseconds per clip; clips that failed."""
    truth = pd.read_csv(root / TRUTH_NAME).set_index("filename")
    samples = load_dataset("casme2", root, "all").samples
    settings = SpotSettings(
        (method,),
        whole_clip=True,
        fps=30.0 if group == "long30" else None,
        prepare=PrepareConfig(aligned=group != "filling"),
    )
    start = time.perf_counter()
    rows, failed = spot_samples(samples, settings, workers=1)
    ms = 1000 * (time.perf_counter() - start) / max(len(samples), 1)
    out = []
    for row in rows:
        clip = truth.loc[row.sample]
        out.append(
            {
                "error": row.spotted - row.annotated,
                "episode": int(clip.offset - clip.onset + 1),
                "edge": row.on_edge,
            }
        )
    return out, ms, len(failed)


def middle(root: Path) -> list[dict[str, Any]]:
    """The middle frame of each clip, scored like a method."""
    truth = pd.read_csv(root / TRUTH_NAME)
    return [
        {
            "error": (clip.n_frames - 1) // 2 - clip.apex,
            "episode": int(clip.offset - clip.onset + 1),
            "edge": False,
        }
        for clip in truth.itertuples()
    ]


def figures(rows: list[dict[str, Any]], ms: float | None = None, failed: int = 0) -> dict:
    errors = np.abs([r["error"] for r in rows]).astype(float)
    n = len(rows) + failed  # a clip that failed is a miss
    out = {
        "n": n,
        "median_abs_error_frames": float(np.median(errors)) if len(errors) else None,
        "within_3_frames": round(float((errors <= 3).sum() / n), 4),
        "within_10pct_of_episode": round(
            float(sum(abs(r["error"]) <= 0.1 * r["episode"] for r in rows) / n), 4
        ),
        "on_clip_edge": round(float(sum(r["edge"] for r in rows) / n), 4),
        "failed": failed,
    }
    if ms is not None:
        out["ms_per_clip"] = round(ms, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=None, help="face photographs (*.jpg)")
    parser.add_argument("--faces", default="drawn,photo")
    parser.add_argument("--groups", default=",".join(GROUPS))
    parser.add_argument("--clips", type=int, default=20, help="clips per group")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, default=None, help="keep the clips here")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    kinds, groups = args.faces.split(","), args.groups.split(",")
    photos = sorted(args.photos.glob("*.jpg")) if args.photos else []
    if "photo" in kinds and not photos:
        raise SystemExit("--faces photo needs --photos DIR holding face photographs (*.jpg)")
    result: dict[str, Any] = {"benchmark": "spotting_hard", "seed": args.seed}
    result["clips_per_group"] = args.clips
    with tempfile.TemporaryDirectory() as tmp:
        base = args.data or Path(tmp)
        for kind in kinds:
            pooled: dict[str, list] = {m: [] for m in (*METHODS, MIDDLE)}
            failed_total = dict.fromkeys(METHODS, 0)
            per_group: dict[str, Any] = {}
            for group in groups:
                root = base / f"{kind}-{group}-{args.seed}"
                if not (root / TRUTH_NAME).is_file():
                    write_clip_set(root, render_group(kind, group, args.clips, args.seed, photos))
                per_group[group] = {}
                for method in METHODS:
                    rows, ms, failed = score(root, group, method)
                    per_group[group][method] = figures(rows, ms, failed)
                    pooled[method] += rows
                    failed_total[method] += failed
                rows = middle(root)
                per_group[group][MIDDLE] = figures(rows)
                pooled[MIDDLE] += rows
            result[kind] = {
                "groups": per_group,
                "pooled": {m: figures(pooled[m], failed=failed_total.get(m, 0)) for m in pooled},
            }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
