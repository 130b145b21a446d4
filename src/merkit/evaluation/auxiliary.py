"""Figures of a model's auxiliary outputs (MOL's optical flow and landmarks) and where they live.

Pure functions: `end_point_error` (mean Euclidean distance between two flow fields, in pixels,
optionally only where the true motion reaches a threshold)
and `landmark_nme` (mean point-to-point distance over the 68 landmarks divided by the truth's
inter-pupil distance, eye centres = means of points 36-41 and 42-47). A run folder may hold
`aux_metrics.json`: rows of (output, measure, value, against) that the report shows as a table
beside the classification figures.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from merkit.errors import ConfigError
from merkit.io import write_json_atomic

AUX_FILE = "aux_metrics.json"
AUX_HEADER = ("output", "measure", "value", "against")


def end_point_error(pred: np.ndarray, truth: np.ndarray, min_motion: float = 0.0) -> float:
    """Mean end-point error of flow fields (..., 2, H, W), in pixels, over the pixels whose true
    motion is at least `min_motion` px (micro-expressions move a small part of the face: over
    every pixel the still ones dominate)."""
    if pred.shape != truth.shape or pred.shape[-3] != 2:
        raise ConfigError(
            f"flow fields of shape (..., 2, H, W) expected, got {pred.shape} and {truth.shape}"
        )
    error = np.sqrt(((pred - truth) ** 2).sum(axis=-3))
    moving = np.sqrt((truth**2).sum(axis=-3)) >= min_motion
    if not moving.any():
        raise ConfigError(f"no pixel moves by {min_motion} px or more")
    return float(error[moving].mean())


def landmark_nme(pred: np.ndarray, truth: np.ndarray) -> float:
    """Normalised mean error of (..., 68, 2) landmarks: per face the mean point distance over
    the truth's inter-pupil distance, averaged over faces."""
    if pred.shape != truth.shape or pred.shape[-2:] != (68, 2):
        raise ConfigError(f"(..., 68, 2) landmarks expected, got {pred.shape} and {truth.shape}")
    distance = np.linalg.norm(
        truth[..., 36:42, :].mean(-2) - truth[..., 42:48, :].mean(-2), axis=-1
    )
    return float((np.linalg.norm(pred - truth, axis=-1).mean(-1) / distance).mean())


def write_aux_metrics(run_dir: str | Path, rows: Sequence[dict[str, Any]], note: str) -> Path:
    """Write `aux_metrics.json` (rows with the AUX_HEADER keys, and a note on how they were
    measured) into a run folder, atomically."""
    for row in rows:
        missing = [key for key in AUX_HEADER if key not in row]
        if missing:
            raise ConfigError(f"auxiliary figure {row} lacks {', '.join(missing)}")
    path = Path(run_dir) / AUX_FILE
    write_json_atomic(path, {"note": note, "rows": [dict(row) for row in rows]})
    return path


def read_aux_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """A run folder's auxiliary figures, or None when it has none."""
    path = Path(run_dir) / AUX_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ConfigError(f"{path}: expected a mapping with a list of rows")
    return data


def aux_table(aux: dict[str, Any]) -> list[list[str]]:
    """The report's rows: values to 4 decimals."""
    return [
        [str(row[key]) if key != "value" else f"{float(row[key]):.4f}" for key in AUX_HEADER]
        for row in aux["rows"]
    ]
