"""The spotting methods merkit's default is measured against, each a motion profile whose peak is
the apex:

- "flow": dense optical flow (Farneback) from the frames a window before and after each frame,
  its affine part (the head motion, fitted by least squares over the face) removed; the
  remaining magnitude in the busiest blocks, the eyes masked, the smaller of the two sides
  (optical-flow spotting in the manner of Shreve et al., FG 2011, and of the MEGC spotting
  baselines). Slow: one flow field per frame and side.
- "feature-difference": Moilanen, Zhao & Pietikainen, ICPR 2014: each frame against the mean of
  the frames k before and after (k a quarter of the window), per block of a 6x6 grid, mean of
  the top third of the blocks, with blurred thumbnails in place of LBP histograms. No head
  motion model.
- "first-frame": the mean absolute difference from the first frame, merkit's earlier spotting
  (and the issue's "largest difference from frame 0" baseline): a drifting head makes its peak
  the last frame.

The window is the clip itself when it is shorter than two windows (an episode, onset to
offset), else EPISODE_MS at the clip's rate.
"""

from __future__ import annotations

import numpy as np

from merkit.preprocess.flow import compute_flow
from merkit.preprocess.spotting import peaks
from merkit.preprocess.spotting.curve import thumbnails

WIDTH = 64  # thumbnail width the baselines compare (what merkit's earlier spotting used)
EPISODE_MS = 200.0  # a micro-expression's onset-to-offset time: the baselines' window
FLOW_BLOCK = 16  # crop pixels per block side for "flow"
FLOW_TOP_SHARE = 0.05  # share of the blocks whose flow counts
FD_GRID = 6  # Moilanen et al.: a 6x6 grid of blocks
FD_TOP_SHARE = 1 / 3  # Moilanen et al.: the top third of the blocks


def window(count: int, fps: float) -> int:
    """The baselines' reach: the clip itself when short, else EPISODE_MS."""
    frames = max(4, round(EPISODE_MS * fps / 1000.0))
    return count - 1 if count < 2 * frames else frames


def top_blocks(energy: np.ndarray, block: int, share: float) -> np.ndarray:
    """Mean of the `share` of (block x block) cells with the most energy: (N, h, w) -> (N,)."""
    n, height, width = energy.shape
    rows, cols = max(1, height // block), max(1, width // block)
    bh, bw = height // rows, width // cols
    cells = energy[:, : rows * bh, : cols * bw].reshape(n, rows, bh, cols, bw).mean(axis=(2, 4))
    cells = cells.reshape(n, -1)
    k = max(1, round(cells.shape[1] * share))
    return np.partition(cells, -k, axis=1)[:, -k:].mean(axis=1)


def first_frame(thumbs: np.ndarray, reference: int = 0) -> np.ndarray:
    """Mean absolute difference of every thumbnail from the `reference`-th one (T,)."""
    return np.abs(thumbs - thumbs[reference]).mean(axis=(1, 2))


def motion_profile(frames: np.ndarray, reference: int = 0) -> np.ndarray:
    """Mean absolute difference of every frame (T, H, W) from `frames[reference]` (T,),
    unsmoothed: a plain motion curve where nothing was spotted."""
    return first_frame(thumbnails(frames, WIDTH), reference)


def feature_difference(thumbs: np.ndarray, reach: int) -> np.ndarray:
    """Moilanen et al.'s feature difference (T,); frames without both references inside the
    clip score 0 (they compare only such frames)."""
    count = len(thumbs)
    half = max(1, reach // 4)
    t = np.arange(count)
    inside = t[half : count - half] if count > 2 * half else t[count // 2 : count // 2 + 1]
    before, after = np.clip(inside - half, 0, count - 1), np.clip(inside + half, 0, count - 1)
    reference = (thumbs[before] + thumbs[after]) / 2
    block = max(1, min(thumbs.shape[1:]) // FD_GRID)
    profile = np.zeros(count)
    profile[inside] = top_blocks(np.abs(thumbs[inside] - reference), block, FD_TOP_SHARE)
    return profile


def flow_difference(faces: np.ndarray, reach: int, keep: np.ndarray) -> np.ndarray:
    """The smaller, of the two sides, of the flow magnitude that the affine head motion does not
    explain, on the `keep` pixels (T,)."""
    count, height, width = faces.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    affine = np.stack([np.ones(height * width), xs.ravel() / width, ys.ravel() / height], axis=1)
    flat_keep = keep.ravel()
    t = np.arange(count)
    sides = []
    for refs in (np.clip(t - reach, 0, count - 1), np.clip(t + reach, 0, count - 1)):
        energy = np.zeros((count, height, width))
        for i, ref in enumerate(refs):
            if i == ref:
                continue
            flow = compute_flow(faces[ref], faces[i], "farneback").reshape(-1, 2).astype(float)
            coef = np.linalg.lstsq(affine[flat_keep], flow[flat_keep], rcond=None)[0]
            residual = ((flow - affine @ coef) ** 2).sum(axis=1) * flat_keep
            energy[i] = residual.reshape(height, width)
        sides.append(top_blocks(energy, FLOW_BLOCK, FLOW_TOP_SHARE))
    return np.minimum(*sides)


def still_level(profile: np.ndarray) -> float:
    """A profile's no-motion level: its lower quartile (most frames of a clip do not move)."""
    return float(np.percentile(profile, 25))


def pick(profile: np.ndarray, fps: float, ends: bool) -> tuple[np.ndarray, int, float, float]:
    """Smoothed profile, its apex (`ends`: the first and last frame may be it), confidence and
    no-motion level."""
    smoothed = peaks.smooth(profile, peaks.smoothing_width(fps, len(profile)))
    apex = int(np.argmax(smoothed)) if ends else peaks.peak(smoothed)
    noise = still_level(smoothed)
    return smoothed, apex, peaks.confidence(smoothed, apex, noise), noise
