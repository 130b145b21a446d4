"""Blinks told apart from movements of the lids, by what a blink is.

A blink closes both eyes nearly completely and reopens them, symmetric and fast (100-400 ms); the
lid actions of micro-expressions (AU5 upper lid raiser, AU7 lid tightener) move a lid by a pixel or
two, and a raised or lowered brow moves the skin above the eye most. So the eye regions stay in the
motion measure, and a blink is a run of frames where both eyes' openings have changed more than
most of what the skin above them has (by OPEN; the skin moves with the lid's fold), reaching a
change far beyond what a lid moved by a pixel or two makes (CLOSED): its eye blocks then do not
count (`merkit.preprocess.spotting.curve`). The change is measured on the registered clip (drift
removed), both-sided like the motion curve (against the frames before and after, so no frame needs
to be known open), as the shift that would change a region as much: root mean square change over
root mean square gradient, in pixels of a 128 px crop. Measured on the hard set's clips of seed 5
(`benchmarks/spotting_hard.py`, 102 blinks, 220 episodes of lid, brow and mouth actions of 0.5-2.5
px on drawn and photographed faces), the largest change of the lesser-changed opening: episodes at
most 0.21 (a brow raised 2.5 px on a drawn face; 0.22 for a 2 px lid tightener on both eyes of a
small face), blinks at least 0.23; its lead over the skin above: episodes at most 0.15, blinks at
least 0.16. The lead alone (at 0.25, the earlier rule) missed 3 of the 64 photographed blinks, both
(at 0.25 and 0.12) 1. Holding 0.8 of the skin's change against the opening's instead of all of it
(ABOVE_SHARE) found 6 more apexes, net, in 525 clips of real faces and 300 of drawn ones (seeds 3,
5, 7) (0.7: 9, 0.5: 12, but a strong drawn surprise is then taken for a blink).
"""

from __future__ import annotations

import cv2
import numpy as np

from merkit.preprocess.spotting.eyes import Eyes
from merkit.preprocess.spotting.registration import warp_matrices

REFERENCE_SIDE = 128  # closures are stated in pixels of a face crop this wide

CLOSED = 0.25  # closure (see `closure`) both eyes' openings reach in a blink
# The skin above an eye moves in a blink too (the upper lid's fold; on a hooded lid, much of it):
# on the hard set's photographed faces up to nearly as much as the opening. Most of its change is
# held against the opening's: a brow moves it more than the opening, a blink less. Not half: a
# surprise (brows raised, lids widened) moves the openings 0.6-1.1 times as much as the skin.
ABOVE_SHARE = 0.8
OPEN = 0.12  # the openings' lead over ABOVE_SHARE of the skin's closure, below which a blink ends
REACH_MS = np.array([10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0])  # half a blink: 50-200 ms
MARGIN_MS = 10.0  # frames either side of a blink that still count as blinking
GAP_MS = 80.0  # blink runs closer than this are one blink (a lid held shut dips)
# Around each eye, in eye widths: the opening with its lids, which a blink covers (half width
# OPENING_HALF, half height OPENING_HALF_HEIGHT), and the skin above it up to the brow (ABOVE_
# HEIGHT more), which a blink barely moves and a raised or lowered brow moves most.
HALF_WIDTH = 0.6
OPENING_HALF_HEIGHT = 0.3
ABOVE_HEIGHT = 0.5


def eye_patches(
    faces: np.ndarray, motion: np.ndarray, scale: float, eyes: Eyes
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per eye, (T, h, w) float32 patches of every aligned face, registered (the motion of
    `merkit.preprocess.spotting.registration`, `scale` crop pixels to its pixel): the
    openings, and the skin above them."""
    matrices = warp_matrices(motion * scale, faces.shape[1:])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    openings, above = [], []
    for centre, width in zip(eyes.centres * faces.shape[2] / eyes.side, eyes.widths, strict=True):
        width = width * faces.shape[2] / eyes.side
        top = centre - np.array([HALF_WIDTH, OPENING_HALF_HEIGHT + ABOVE_HEIGHT]) * width
        origin = np.floor(top)
        cols = int(np.ceil(2 * HALF_WIDTH * width)) + 1
        split = int(np.ceil(ABOVE_HEIGHT * width))
        rows = split + int(np.ceil(2 * OPENING_HALF_HEIGHT * width)) + 1
        shifted = matrices.copy()
        shifted[:, :, 2] += matrices[:, :, :2] @ origin.astype(np.float32)
        patch = np.stack(
            [
                cv2.warpAffine(f, m, (cols, rows), flags=flags, borderMode=cv2.BORDER_REPLICATE)
                for f, m in zip(faces, shifted, strict=True)
            ]
        ).astype(np.float32)
        above.append(patch[:, :split])
        openings.append(patch[:, split:])
    return openings, above


def _energy(flat: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    change = flat[first] - flat[second]
    return (change * change).mean(axis=1)


def closure(patches: list[np.ndarray], side: int, fps: float) -> np.ndarray:
    """(T, 2) how far each eye region of each frame differs from the frames on both sides of it
    (the smaller of the two sides, at the reach where that is largest; clamped to the clip), as
    the shift that would change it as much: the root mean square change above the no-motion
    level (between consecutive frames) over the root mean square of the region's strongest
    quarter of gradients, in pixels of a REFERENCE_SIDE face crop (`side` is the crop's).
    Both-sided, so that no frame needs to be known open: a blink differs from the open eye
    before and after it, whichever frames those are."""
    count = len(patches[0])
    t = np.arange(count)
    reaches = np.unique(
        np.clip(np.round(REACH_MS * fps / 1000.0).astype(int), 1, max(1, count - 1))
    )
    out = np.zeros((count, len(patches)))
    for i, patch in enumerate(patches):
        flat = patch.reshape(count, -1)
        gy, gx = np.gradient(np.median(patch, axis=0))
        strength = np.sort(np.hypot(gx, gy).ravel())[-max(1, gx.size // 4) :]
        scale = max(float(np.sqrt(np.mean(strength**2))), 1e-3)
        still = float(np.median(_energy(flat, t[:-1], t[1:]))) if count > 1 else 0.0
        sided = np.stack(
            [
                np.minimum(
                    _energy(flat, t, np.maximum(t - reach, 0)),
                    _energy(flat, t, np.minimum(t + reach, count - 1)),
                )
                for reach in reaches
            ]
        )
        # Two neighbouring reaches must agree: a blink differs from the open eye at every reach
        # past half its length, a frame between two blinks only where both references blink.
        best = np.minimum(sided[:-1], sided[1:]).max(axis=0) if len(sided) > 1 else sided[0]
        out[:, i] = np.sqrt(np.maximum(best - still, 0.0)) / scale
    return out * REFERENCE_SIDE / side


def blink_frames(openings: np.ndarray, above: np.ndarray, fps: float) -> np.ndarray:
    """(T,) bool: frames inside a blink -- a run where both eyes' openings (T, 2) lead
    ABOVE_SHARE of the skin above them (T, 2) by OPEN, in which both openings reach CLOSED --
    widened while the lead still falls (a lid's last, slow opening), joined to the next within
    GAP_MS, and widened by MARGIN_MS."""
    both = (openings - ABOVE_SHARE * above).min(axis=1)
    shut = openings.min(axis=1)
    count = len(both)
    out = np.zeros(count, bool)
    start = 0
    while start < count:
        if both[start] < OPEN:
            start += 1
            continue
        stop = start
        while stop + 1 < count and both[stop + 1] >= OPEN:
            stop += 1
        if shut[start : stop + 1].max() >= CLOSED:
            first, last = start, stop
            while first > 0 and both[first - 1] < both[first]:
                first -= 1
            while last + 1 < count and both[last + 1] < both[last]:
                last += 1
            out[first : last + 1] = True
        start = stop + 1
    gap = int(round(GAP_MS * fps / 1000.0))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], out.astype(int), [0]])))
    starts, stops = edges[::2], edges[1::2]  # each run of blink frames: [start, stop)
    for stop, start in zip(stops[:-1], starts[1:], strict=True):
        if start - stop <= gap:  # a short break inside one blink (the lid held shut)
            out[stop:start] = True
    margin = int(np.ceil(MARGIN_MS * fps / 1000.0))
    grown = out.copy()
    for shift in range(1, margin + 1):
        grown[shift:] |= out[:-shift]
        grown[:-shift] |= out[shift:]
    return grown
