"""Apex spotting inside an annotated interval, and interval spotting in a long clip.

Both are pure functions of (aligned, grayscale) frames, so `merkit predict` can run them on a
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


def _features(frames: np.ndarray, width: int = PROFILE_WIDTH) -> np.ndarray:
    """(T, h, w) float32 blurred thumbnails of grayscale frames (T, H, W)."""
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
    feats = _features(frames)
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
    feats = _features(frames)
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
