"""The spotting methods by name, and `spot`: a clip's aligned faces in, its apex out.

- "registered-difference" (the default): every frame registered onto the clip's reference face
  (`registration`: drift removed however slow), the residuals compared both-sided at every
  reach (`curve`), blinks told from lid movements by what a blink is (`blinks`, `eyes`).
- "flow", "feature-difference", "first-frame": the methods it is measured against
  (`baselines`).

`merkit.preprocess.config.SPOTTING_METHODS` names them in the same order without OpenCV.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import cv2
import numpy as np

from merkit.errors import ConfigError
from merkit.preprocess.config import DEFAULT_SPOTTING
from merkit.preprocess.spotting import baselines, blinks, curve, peaks
from merkit.preprocess.spotting.eyes import Eyes, find_eyes
from merkit.preprocess.spotting.registration import register

DEFAULT_FPS = 200.0  # CASME II's and SAMM's rate: what a clip without one is taken to have
FIT_ZONE = 2.0  # eye regions this many times as large are left out of the registration fit
EYE_ZONE = 1.5  # eye blocks: the eye regions this many times as large (lids and crease)


@dataclass(frozen=True)
class Spot:
    """Where a clip's movement peaks: its apex index, the motion curve and how clear its peak is."""

    apex: int
    profile: np.ndarray  # (T,) smoothed motion per frame, in the method's units
    confidence: float  # 0..1 (`peaks.confidence`)
    noise: float  # the no-motion level of the profile
    method: str
    eyes: str  # how the eye regions were found (`eyes.LANDMARKS`, ...), or "none"
    reach: int = 0  # frames to the references at the apex: about half the movement's duration
    blinks: tuple[tuple[int, int], ...] = ()  # first and last frame of each blink left out


@dataclass(frozen=True)
class Clip:
    """What a method is given: the aligned faces, their rate, the longest reach, the eyes."""

    faces: np.ndarray  # (T, H, W) uint8
    fps: float
    longest: int  # frames
    eyes: Eyes | None
    seen: np.ndarray | None = None  # (H, W) bool: pixels that show the frame (None: all)


def _registered_difference(clip: Clip) -> Spot:
    count = len(clip.faces)
    thumbs = curve.thumbnails(clip.faces)
    blinking = np.zeros(count, bool)
    eye_blocks = np.zeros(curve.GRID * curve.GRID, bool)
    eye_zone = None
    if clip.eyes is not None:
        eye_blocks = curve.block_masks(clip.eyes.masks(thumbs.shape[1:], EYE_ZONE))
        eye_zone = clip.eyes.masks(thumbs.shape[1:], FIT_ZONE).any(axis=0)
    seen = None
    if clip.seen is not None:
        shape = thumbs.shape[2], thumbs.shape[1]
        seen = cv2.resize(clip.seen.astype(np.uint8), shape, interpolation=cv2.INTER_AREA) == 1
        seen = cv2.erode(seen.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # the blur's reach
    registered = register(thumbs, eye_zone, seen)
    if clip.eyes is not None:
        scale = clip.faces.shape[2] / thumbs.shape[2]
        opening, above = blinks.eye_patches(clip.faces, registered.motion, scale, clip.eyes)
        side = clip.faces.shape[2]
        blinking = blinks.blink_frames(
            blinks.closure(opening, side, clip.fps), blinks.closure(above, side, clip.fps), clip.fps
        )
    pairs = curve.Pairs(registered.residuals)
    t = np.arange(count - 1)
    consecutive = pairs(t, t + 1)
    noise_levels = curve.noise_levels(consecutive)
    spans = curve.reaches(count, clip.fps, clip.longest * 1000.0 / clip.fps)
    best, best_reach = curve.both_sided(pairs, count, spans, eye_blocks, blinking, noise_levels)
    motion, top = curve.top_mean(best)
    still, _ = curve.top_mean(consecutive / noise_levels)
    profile = peaks.smooth(motion, peaks.smoothing_width(clip.fps, count))
    noise = float(np.median(still))
    apex = peaks.refine(profile, peaks.peak(profile), noise)
    reach = int(np.median(best_reach[apex, top[apex]]))
    return Spot(
        apex=apex,
        profile=profile,
        confidence=peaks.confidence(profile, apex, noise),
        noise=noise,
        method="registered-difference",
        eyes=clip.eyes.source if clip.eyes is not None else "none",
        reach=reach,
        blinks=_runs(blinking),
    )


def _baseline(name: str, clip: Clip) -> Spot:
    count = len(clip.faces)
    reach = baselines.window(count, clip.fps)
    if name == "flow":
        keep = np.ones(clip.faces.shape[1:], bool)
        if clip.eyes is not None:
            keep &= ~clip.eyes.masks(clip.faces.shape[1:]).any(axis=0)
        raw = baselines.flow_difference(clip.faces, reach, keep)
    elif name == "feature-difference":
        raw = baselines.feature_difference(curve.thumbnails(clip.faces, baselines.WIDTH), reach)
    else:
        raw = baselines.first_frame(curve.thumbnails(clip.faces, baselines.WIDTH))
    profile, apex, sure, noise = baselines.pick(raw, clip.fps, ends=name == "first-frame")
    eyes = clip.eyes.source if clip.eyes is not None else "none"
    return Spot(apex, profile, sure, noise, name, eyes, reach)


def _runs(flags: np.ndarray) -> tuple[tuple[int, int], ...]:
    """(first, last) index of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
    return tuple((int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True))


@dataclass(frozen=True)
class SpottingMethod:
    """A named way to spot, and what it follows."""

    name: str
    run: Callable[[Clip], Spot] = field(repr=False)
    uses_eyes: bool
    follows: str


METHODS: dict[str, SpottingMethod] = {
    m.name: m
    for m in (
        SpottingMethod(
            "registered-difference",
            _registered_difference,
            uses_eyes=True,
            follows="every frame registered onto the clip's median face (Lucas-Kanade affine "
            "image alignment, Baker & Matthews, IJCV 2004), residuals compared both-sided at "
            "every reach; blinks rejected by lid closure",
        ),
        SpottingMethod(
            "flow",
            partial(_baseline, "flow"),
            uses_eyes=True,
            follows="optical-flow magnitude with the affine head motion removed (Shreve et al., "
            "FG 2011; MEGC spotting baselines); both-sided; eyes masked",
        ),
        SpottingMethod(
            "feature-difference",
            partial(_baseline, "feature-difference"),
            uses_eyes=False,
            follows="feature difference, Moilanen, Zhao & Pietikainen, ICPR 2014 "
            "(thumbnail blocks in place of LBP histograms)",
        ),
        SpottingMethod(
            "first-frame",
            partial(_baseline, "first-frame"),
            uses_eyes=False,
            follows="mean absolute difference from the first frame (merkit's earlier spotting; "
            "drifts to the clip's end)",
        ),
    )
}


def get_method(name: str) -> SpottingMethod:
    """The method called `name`; a ConfigError listing the known ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        known = ", ".join(METHODS)
        raise ConfigError(f"unknown spotting method {name!r}; choose one of {known}") from None


def check_fps(fps: float) -> float:
    """A frame rate the user gave, checked: finite and above 0 (a ConfigError otherwise)."""
    if not (math.isfinite(fps) and fps > 0):
        raise ConfigError(f"--fps {fps:g}: expected a frame rate above 0 frames per second")
    return float(fps)


LONGEST_MS = 1000.0  # the longest reach by default: half of a 2 s movement


def spot(
    frames: np.ndarray,
    method: str = DEFAULT_SPOTTING,
    fps: float | None = None,
    longest: int | None = None,
    eyes: Eyes | None = None,
    seen: np.ndarray | None = None,
) -> Spot:
    """Spot the apex of the movement in aligned grayscale faces (T, H, W).

    `fps` is the clip's frame rate (DEFAULT_FPS if unknown): every time span is set in
    milliseconds from it. `longest` (frames) caps how far references reach (default
    LONGEST_MS). `eyes` default to those found on the first frame (else the last, else the
    middle one) for the methods that use them. `seen` (H, W) marks the pixels that show the
    frame, where a face that fills it leaves part of the crop to the warp's invention.
    """
    spotter = get_method(method)
    count = len(frames)
    if count < 2:
        return Spot(0, np.zeros(count), 0.0, 0.0, spotter.name, "none")
    rate = fps or DEFAULT_FPS
    if spotter.uses_eyes and eyes is None:
        eyes = next((e for i in (0, count - 1, count // 2) if (e := find_eyes(frames[i]))), None)
    reach = longest if longest is not None else max(1, round(LONGEST_MS * rate / 1000.0))
    return spotter.run(Clip(frames, rate, reach, eyes if spotter.uses_eyes else None, seen))
