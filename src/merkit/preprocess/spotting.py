"""Apex spotting inside an annotated interval, interval spotting in a long clip, and timing a
spotted movement by a template fit.

All are pure functions of (aligned, grayscale) frames, so `merkit predict` can run them on a
video without any annotation. The motion measure is deliberately cheap: the mean absolute
difference of blurred, down-sampled frames. It costs microseconds per frame, and at
micro-expression amplitudes it ranks frames the same way a dense flow magnitude does.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Frames are shrunk to this width (keeping aspect) and blurred before differencing: noise and
# compression artefacts average out, facial motion (several pixels wide) survives.
PROFILE_WIDTH = 64


def thumbnails(frames: np.ndarray, width: int = PROFILE_WIDTH) -> np.ndarray:
    """(T, h, w) float32 blurred thumbnails of grayscale frames (T, H, W): what motion is
    measured on."""
    height = max(1, round(frames.shape[1] * width / frames.shape[2]))
    small = [
        cv2.GaussianBlur(
            cv2.resize(f.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA),
            (0, 0),
            1.0,
        )
        for f in frames
    ]
    return np.stack(small)


def motion_profile(frames: np.ndarray, reference: int = 0) -> np.ndarray:
    """Motion of every frame against `frames[reference]`: mean absolute difference (T,)."""
    feats = thumbnails(frames)
    return np.abs(feats - feats[reference]).mean(axis=(1, 2))


def spot_apex(frames: np.ndarray) -> int:
    """Index of the frame that moved most from the first one (the onset); 0 for one frame."""
    return int(np.argmax(motion_profile(frames))) if len(frames) > 1 else 0


@dataclass(frozen=True)
class Spot:
    """A spotted movement: frame indices into the clip and its contrast score."""

    onset: int
    apex: int
    offset: int
    score: float


def feature_difference(frames: np.ndarray, window: int) -> np.ndarray:
    """Per frame, how much it differs from the mean of the frames `window // 2` before and after.

    This is the feature-difference measure of Moilanen et al. (ICPR 2014) with thumbnails in
    place of LBP histograms: a movement that starts and ends within the window peaks at its
    apex, while slow drifts (head motion, lighting) cancel out.
    """
    half = max(1, window // 2)
    feats = thumbnails(frames)
    count = len(feats)
    before = feats[np.clip(np.arange(count) - half, 0, count - 1)]
    after = feats[np.clip(np.arange(count) + half, 0, count - 1)]
    return np.abs(feats - 0.5 * (before + after)).mean(axis=(1, 2))


def spot_intervals(
    frames: np.ndarray, window: int, threshold: float = 0.5, min_score: float = 0.0
) -> list[Spot]:
    """Movements in a long grayscale clip (T, H, W), strongest first.

    `window` is the expected movement length in frames (e.g. 0.5 s * fps). The difference
    profile is contrasted against its surroundings; peaks above
    `mean + threshold * (max - mean)` and above `min_score` (gray levels), at least `window // 2`
    apart, become spots; onset/offset are where the difference profile falls below half of its
    value at the apex, at most `window // 2` frames away.
    """
    half = max(1, window // 2)
    diff = feature_difference(frames, window)
    count = len(diff)
    idx = np.arange(count)
    around = 0.5 * (
        diff[np.clip(idx - half, 0, count - 1)] + diff[np.clip(idx + half, 0, count - 1)]
    )
    contrast = np.maximum(diff - around, 0.0)
    if count == 0 or contrast.max() <= 0:
        return []
    level = max(contrast.mean() + threshold * (contrast.max() - contrast.mean()), min_score)
    spots: list[Spot] = []
    taken = np.zeros(count, dtype=bool)
    for apex in np.argsort(contrast)[::-1]:
        if contrast[apex] < level or contrast[apex] <= 0:
            break
        if taken[max(0, apex - half) : apex + half + 1].any():
            continue
        onset, offset = _half_peak_bounds(diff, int(apex), half)
        spots.append(Spot(onset, int(apex), offset, float(contrast[apex])))
        taken[apex] = True
    return spots


def _half_peak_bounds(profile: np.ndarray, apex: int, half: int) -> tuple[int, int]:
    """Nearest frames around `apex` (within `half`) where `profile` drops below half its peak."""
    floor = 0.5 * profile[apex]
    onset = apex
    while onset > max(0, apex - half) and profile[onset - 1] >= floor:
        onset -= 1
    offset = apex
    while offset < min(len(profile) - 1, apex + half) and profile[offset + 1] >= floor:
        offset += 1
    return onset, offset


# --- timing one movement by a template fit ------------------------------------------------------


def raised_cosine(
    t: np.ndarray, onset: np.ndarray, apex: np.ndarray, offset: np.ndarray
) -> np.ndarray:
    """0 before onset, rising to 1 at apex, falling to 0 at offset (broadcasting)."""
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - onset) / (apex - onset), 0, 1))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.clip((t - apex) / (offset - apex), 0, 1))
    return np.where(t <= apex, rise, fall)


def focused_profile(faces: np.ndarray) -> np.ndarray:
    """Motion of every frame against the first, averaged where the clip moves (T,).

    A micro-expression moves a small part of the face; a whole-face mean (the spotting
    profile) drowns its first frames in sensor noise, which makes onsets look late. Weighting
    each thumbnail pixel by its mean motion over the clip keeps the moving region's signal.
    """
    thumbs = thumbnails(faces)
    motion = np.abs(thumbs - thumbs[0])
    weight = motion.mean(axis=0)
    return (motion * (weight / max(float(weight.sum()), 1e-12))).sum(axis=(1, 2))


def fit_movement(faces: np.ndarray, apex: int, window: int) -> tuple[int, int, int]:
    """(onset, apex, offset) of the movement spotted near `apex`, by least-squares template fit.

    The profile is the focused motion of each frame against the frame `window` before the spot,
    smoothed over a tenth of a window (codecs add a periodic quality ripple); the model is
    `a + b * t + c * raised_cosine(t)` with c > 0 (the linear term absorbs head drift and
    lighting change), searched over apex within a quarter window of the spot, and onset/offset
    between an eighth of a window and a window from the apex. The fit uses every frame of the
    movement, so noise delays the onset far less than it delays a threshold crossing.
    """
    first = max(0, apex - window)
    stop = min(len(faces), apex + window + 1)
    raw = focused_profile(faces[first:stop])[1:].astype(np.float64)  # frames first+1...
    width = max(1, window // 10)
    profile = np.convolve(np.pad(raw, width // 2, mode="edge"), np.ones(width) / width, "valid")
    n, quarter, step, shortest = (
        len(profile),
        window // 4,
        max(1, window // 20),
        max(1, window // 8),
    )
    centre = apex - first - 1
    candidates = np.array(
        [
            (on, top, off)
            for top in range(max(1, centre - quarter), min(n - 2, centre + quarter) + 1)
            for on in range(top - shortest, max(-quarter, top - window) - 1, -step)
            for off in range(top + shortest, min(n + quarter, top + window) + 1, step)
        ],
        dtype=np.float64,
    )
    t = np.arange(n, dtype=np.float64)
    shape = raised_cosine(t, *(candidates[:, i, None] for i in range(3)))  # (K, n)
    # Normal equations of the fit on the basis (1, t, shape), per candidate.
    ones = np.ones(len(shape))
    s1, st, ss = shape.sum(1), shape @ t, (shape * shape).sum(1)
    gram = np.stack(
        [
            np.stack([ones * n, ones * t.sum(), s1], -1),
            np.stack([ones * t.sum(), ones * (t @ t), st], -1),
            np.stack([s1, st, ss], -1),
        ],
        -2,
    ) + 1e-9 * np.eye(3)
    rhs = np.stack([ones * profile.sum(), ones * (t @ profile), shape @ profile], -1)
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
    fitted = coef[:, :1] + coef[:, 1:2] * t + coef[:, 2:] * shape
    residual = ((fitted - profile) ** 2).sum(axis=1)
    residual[coef[:, 2] <= 0] = np.inf
    on, top, off = candidates[int(np.argmin(residual))].astype(int) + first + 1
    last = len(faces) - 1
    return int(np.clip(on, 0, last)), int(top), int(np.clip(off, 0, last))
