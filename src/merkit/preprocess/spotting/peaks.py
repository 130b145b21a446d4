"""From a motion curve to an apex: smoothing, the peak away from the clip's ends, how clear it is.

Confidence (0..1): the share of the peak's height that stands above both the no-motion level and
the highest other peak of the curve. 0.9 means a single peak ten times the noise; near 0, no
clear peak.
"""

from __future__ import annotations

import numpy as np

SMOOTH_MS = 30.0  # width of the smoothing window
TOP_SHARE = 0.5  # the part of a peak that locates its apex


def smoothing_width(fps: float, count: int) -> int:
    """Frames in SMOOTH_MS at `fps`, odd, at least 1, at most a quarter of a `count`-frame clip
    (a short clip's peak is a few frames wide)."""
    return min(max(1, round(SMOOTH_MS * fps / 1000.0)), max(1, count // 4)) | 1


def smooth(profile: np.ndarray, width: int) -> np.ndarray:
    """Hann-weighted moving average over `width` frames (odd), edges padded with their values."""
    if width <= 1 or len(profile) < 3:
        return profile.astype(np.float64)
    kernel = np.hanning(width + 2)[1:-1]
    padded = np.pad(profile.astype(np.float64), width // 2, mode="edge")
    return np.convolve(padded, kernel / kernel.sum(), mode="valid")


def peak(profile: np.ndarray) -> int:
    """The curve's highest frame, never the first or last one (a clip's ends have no neutral
    frame on one side, so nothing there is known to be an apex) unless the clip has two frames."""
    if len(profile) <= 2:
        return int(np.argmax(profile))
    return int(np.argmax(profile[1:-1])) + 1


def confidence(profile: np.ndarray, apex: int, noise: float) -> float:
    """Share of the peak above both the noise level and the highest other local maximum."""
    top = float(profile[apex])
    if top <= 0:
        return 0.0
    half = noise + 0.5 * (top - noise)
    low, high = apex, apex
    while low > 0 and profile[low - 1] >= half:
        low -= 1
    while high < len(profile) - 1 and profile[high + 1] >= half:
        high += 1
    padded = np.pad(profile, 1, mode="constant", constant_values=-np.inf)
    maxima = (profile >= padded[:-2]) & (profile >= padded[2:])
    maxima[low : high + 1] = False
    rival = float(profile[maxima].max()) if maxima.any() else 0.0
    return float(np.clip((top - max(noise, rival)) / top, 0.0, 1.0))


def refine(profile: np.ndarray, apex: int, noise: float, share: float = TOP_SHARE) -> int:
    """The apex of the peak around `apex` by a least-squares fit of two half-parabolas that meet
    at it, over the frames within the top `share` of the peak: every frame of the top counts,
    not only the highest (a broad peak's highest frame is mostly noise), and the rise and the
    fall may differ in speed, as they do in a movement."""
    top, floor = float(profile[apex]), noise
    level = floor + (1 - share) * (top - floor)
    low, high = apex, apex
    while low > 1 and profile[low - 1] >= level:
        low -= 1
    while high < len(profile) - 2 and profile[high + 1] >= level:
        high += 1
    if high - low < 3:
        return apex
    t = np.arange(low, high + 1, dtype=np.float64)
    y = profile[low : high + 1]
    best, best_error = apex, np.inf
    for vertex in np.arange(low, high + 0.5, 0.5):
        left = np.where(t < vertex, (t - vertex) ** 2, 0.0)
        right = np.where(t >= vertex, (t - vertex) ** 2, 0.0)
        design = np.stack([np.ones_like(t), -left, -right], axis=1)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        if coef[1] < 0 or coef[2] < 0:
            continue
        error = float(((design @ coef - y) ** 2).sum())
        if error < best_error:
            best, best_error = int(round(vertex)), error
    return best
