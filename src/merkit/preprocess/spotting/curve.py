"""The motion curve of a registered clip: how far each frame's face differs from the neutral face
on both sides of it, at whatever duration the movement has.

A frame t is compared with the frames a reach d before and after it (clamped to the clip), and a
movement counts only where the face differs from both sides: a drift or a slow change of light
that grows steadily cannot make a peak, and a frame is never compared with itself at the clip's
ends. The reach that fits a movement is unknown -- 40 ms at 200 fps is 8 frames, a 1 s movement
at 30 fps needs 15 -- so every reach from REACH_MS[0] to the longest is tried (doubling; the clip
itself is one when it is shorter), and each block keeps its largest both-sided difference: the
frame at a movement's apex differs from neutral frames on both sides once the reach spans its
rise and fall, while a frame on the rise never differs more than the apex does. References that
are blink frames do not count in the eye blocks (`merkit.preprocess.spotting.blinks`).

Differences are energies of the registration residuals (`merkit.preprocess.spotting.registration`,
every other pixel each way) summed over blocks of an eighth of the face, each divided by its
no-motion level -- the larger of its median energy between consecutive frames (sensor noise and
compression) and the lower quartile of its both-sided energy at that reach over the clip (what a
long drift leaves at long reaches) -- so that each block is measured in its own noise; a frame's
motion is the mean of its top 5 % of blocks, because a micro-expression moves a small part of
the face (Moilanen et al., ICPR 2014, kept the top third of 36 blocks; smaller blocks need a
smaller share).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PROFILE_WIDTH = 128  # frames are compared at most this wide (blurred): noise averages out
REACH_MS = (40.0, 1000.0)  # shortest and longest reach before and after a frame
SAMPLING = 2  # residuals are kept at every SAMPLING-th pixel each way (`registration`)
GRID = 8  # blocks per side
TOP_SHARE = 0.05  # share of the blocks whose motion counts
TYPICAL_PERCENTILE = 25  # a block's typical both-sided energy at a reach: its lower quartile
NOISE_FLOOR = 0.5  # least no-motion level of a block, relative to the median block's


def thumbnails(frames: np.ndarray, width: int = PROFILE_WIDTH) -> np.ndarray:
    """(T, h, w) float32 blurred thumbnails of grayscale frames (T, H, W): what motion is
    measured on. All frames are resized as one tall image (one call; their boundaries fall on
    pixel boundaries, so none mixes with the next), then blurred one by one."""
    count, rows, cols = frames.shape
    height = max(1, round(rows * width / cols))
    stacked = frames.reshape(count * rows, cols).astype(np.float32)
    if (height, width) != (rows, cols):
        stacked = cv2.resize(stacked, (width, count * height), interpolation=cv2.INTER_AREA)
    small = stacked.reshape(count, height, width)
    return np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in small])


def reaches(count: int, fps: float, longest_ms: float = REACH_MS[1]) -> np.ndarray:
    """The reaches (frames) to try in a clip of `count` frames at `fps`: doubling from
    REACH_MS[0] up to `longest_ms`, at least one frame, at most the clip (which is one of them
    when it is shorter than the longest)."""
    steps = int(np.floor(np.log2(longest_ms / REACH_MS[0]))) + 1
    wanted = np.round(REACH_MS[0] * 2.0 ** np.arange(steps) * fps / 1000.0).astype(int)
    out = {int(np.clip(r, 1, count - 1)) for r in wanted}
    return np.array(sorted(out))


def block_grid(shape: tuple[int, int]) -> tuple[int, int]:
    """Pixels per block (rows, columns) of an image of `shape` cut into GRID x GRID blocks."""
    return max(1, shape[0] // GRID), max(1, shape[1] // GRID)


def block_masks(masks: np.ndarray) -> np.ndarray:
    """(B,) bool: blocks of the sampled residuals that any of `masks` (K, h, w) at the
    thumbnail's size touches."""
    shape = masks.shape[1] // SAMPLING, masks.shape[2] // SAMPLING
    small = np.stack([cv2.resize(m.astype(np.uint8), shape[::-1], cv2.INTER_AREA) for m in masks])
    bh, bw = block_grid(shape)
    cut = small.any(axis=0)[: GRID * bh, : GRID * bw]
    return cut.reshape(GRID, bh, GRID, bw).any(axis=(1, 3)).reshape(-1)


@dataclass
class Pairs:
    """Block energies of the difference between two frames' residuals, (N, B) for index
    arrays."""

    frames: np.ndarray  # (T, h, w) residuals

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        bh, bw = block_grid(self.frames.shape[1:])
        frames = self.frames[:, : GRID * bh, : GRID * bw]
        diff = frames[first] - frames[second]
        squared = (diff * diff).reshape(len(first) * GRID * bh, GRID * bw)
        # Block means by area resampling, all pairs in one call (blocks tile the frames).
        means = cv2.resize(squared, (GRID, len(first) * GRID), interpolation=cv2.INTER_AREA)
        return means.reshape(len(first), GRID * GRID) * (bh * bw)


def noise_levels(consecutive: np.ndarray) -> np.ndarray:
    """(B,) each block's no-motion energy: its median between consecutive frames (`consecutive`,
    (T - 1, B)), at least NOISE_FLOOR of the median block's (a flat or saturated block has
    almost no noise, and would turn any small change into a large one)."""
    levels = np.median(consecutive, axis=0)
    return np.maximum(levels, NOISE_FLOOR * np.median(levels) + 1e-6)


def both_sided(
    pairs: Pairs,
    count: int,
    spans: np.ndarray,
    eye_blocks: np.ndarray,
    blinking: np.ndarray,
    noise: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(T, B) each block's largest both-sided energy over the reaches `spans`, and (T,) the
    reach at which each frame's top blocks reached it. Eye blocks do not count against a
    reference in a blink (`blinking`, (T,) bool)."""
    t = np.arange(count)
    first, last = pairs(t, np.zeros(count, int)), pairs(t, np.full(count, count - 1))
    best = np.zeros_like(first)
    best_reach = np.zeros((count, first.shape[1]), int)
    for reach in spans:
        inside = t[: count - reach]
        ahead = pairs(inside, inside + reach)  # frame t against t + reach
        after = last.copy()
        after[: count - reach] = ahead
        before = first.copy()
        before[reach:] = ahead
        after[blinking[np.minimum(t + reach, count - 1)][:, None] & eye_blocks] = 0
        before[blinking[np.maximum(t - reach, 0)][:, None] & eye_blocks] = 0
        energy = np.minimum(before, after)
        energy = energy / np.maximum(noise, np.percentile(energy, TYPICAL_PERCENTILE, axis=0))
        better = energy > best
        best = np.where(better, energy, best)
        best_reach = np.where(better, reach, best_reach)
    best[blinking[:, None] & eye_blocks] = 0
    return best, best_reach


def top_mean(scores: np.ndarray, share: float = TOP_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """(T,) mean of each frame's top `share` of blocks, and (T, k) which blocks they were."""
    k = max(1, round(scores.shape[1] * share))
    top = np.argpartition(scores, -k, axis=1)[:, -k:]
    return np.take_along_axis(scores, top, axis=1).mean(axis=1), top
