"""Figures of a model's auxiliary outputs (MOL's optical flow and landmarks).

Pure functions: `end_point_error` (mean Euclidean distance between two flow fields, in pixels,
optionally only where the true motion reaches a threshold) and `landmark_nme` (mean
point-to-point distance over the 68 landmarks divided by the truth's inter-pupil distance, eye
centres = means of points 36-41 and 42-47). A run folder keeps such figures as rows of
AUX_HEADER in `aux_metrics.json` (`RunFolder.write_aux`), which the report shows as a table
beside the classification figures.
"""

from __future__ import annotations

import numpy as np

from merkit.errors import ConfigError

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
