"""Test helpers: a tiny MEGC2019 flow-map folder in the published layout, and stand-in engines.

The folder holds `combined_3class_gt.csv` (no header: db,subject,filename,label; SAMM subjects
unpadded) and one 28x28 RGB PNG per sample named `{subject}_{filename} .png`. Each map is bright
in the channel of its class plus noise, so a nearest-centroid engine scores well above chance.
With `apex_faces`, `apex/{subject}_{filename}.jpg` holds a procedural apex face per sample (the
input of the facial-region mosaic).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from builders import APEX_FOLDER, write_face_image

# (db, subject as in the csv, subject as in the map names, clip prefix)
SUBJECTS = (
    ("casme2", "sub01", "sub01", "EP01_{:02d}"),
    ("casme2", "sub02", "sub02", "EP02_{:02d}"),
    ("samm", "6", "006", "006_1_{}"),
    ("samm", "7", "007", "007_1_{}"),
    ("smic", "s01", "s01", "s01_ne_{:02d}"),
    ("smic", "s02", "s02", "s02_ne_{:02d}"),
)


def write_flow_dataset(
    root: Path, per_subject: int = 4, seed: int = 0, apex_faces: bool = False
) -> Path:
    """Write the layout under `root`; returns root. 6 subjects x `per_subject` samples."""
    rng = np.random.default_rng(seed)
    maps = root / "STSNet_whole_norm_u_v_os"
    maps.mkdir(parents=True)
    rows = []
    for s, (db, csv_subject, map_subject, clip) in enumerate(SUBJECTS):
        for k in range(per_subject):
            label = (s + k) % 3
            filename = clip.format(k + 1)
            rows.append(f"{db},{csv_subject},{filename},{label}")
            rgb = rng.integers(0, 90, size=(28, 28, 3))
            rgb[:, :, label] += 160
            bgr = rgb[:, :, ::-1].astype(np.uint8)
            assert cv2.imwrite(str(maps / f"{map_subject}_{filename} .png"), bgr)
            if apex_faces:
                face = root / APEX_FOLDER / f"{map_subject}_{filename}.jpg"
                write_face_image(face, seed=seed * 1000 + len(rows))
    (root / "combined_3class_gt.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


class CentroidEngine:
    """Nearest-centroid stand-in for the torch engine's `fit_predict`; counts calls and folds.

    Seeds add different noise to the scores so seeds differ; `fail_after` raises once that many
    calls have run (an interrupted run).
    """

    def __init__(self, fail_after: int | None = None, noise: float = 0.0) -> None:
        self.calls = 0
        self.folds = 0
        self.fail_after = fail_after
        self.noise = noise
        self.recipes: list[str] = []

    def fit_predict(self, recipe, x, y, folds, num_classes, seed=0, *, progress=None, **kw):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.folds += len(folds)
        self.recipes.append(recipe.model)
        rng = np.random.default_rng(seed)
        flat = x.reshape(len(x), -1).astype(np.float64)
        out = []
        for i, (train, test) in enumerate(folds):
            centroids = np.stack(
                [
                    flat[train][y[train] == c].mean(axis=0)
                    if (y[train] == c).any()
                    else np.zeros(flat.shape[1])
                    for c in range(num_classes)
                ]
            )
            scores = -((flat[test][:, None, :] - centroids[None]) ** 2).mean(axis=-1) * 50
            scores = scores + self.noise * rng.standard_normal(scores.shape)
            probs = np.exp(scores - scores.max(axis=1, keepdims=True))
            out.append(probs / probs.sum(axis=1, keepdims=True))
            if progress is not None:
                progress(i + 1, len(folds))
        return out


class SlowEngine:
    """A stand-in job of `recipe.epochs` epochs of 0.1 s that leaves `done-{seed}` in the folder
    named by $MERKIT_TEST_MARKS when it runs to the end (an interrupted job leaves nothing)."""

    def fit_predict(self, recipe, x, y, folds, num_classes, seed=0, *, progress=None, **kw):
        for epoch in range(recipe.epochs):
            time.sleep(0.1)
            if progress is not None:
                progress(epoch + 1, recipe.epochs)
        (Path(os.environ["MERKIT_TEST_MARKS"]) / f"done-{seed}").touch()
        return [np.full((len(test), num_classes), 1 / num_classes) for _, test in folds]


slow_engine = SlowEngine()
