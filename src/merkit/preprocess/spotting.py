"""Apex spotting: where in a clip the facial movement peaks, how clear that peak is, and the curve.

Every method turns aligned grayscale faces (T, H, W) into a motion profile, one value per frame,
and the apex is the profile's peak. They differ in what they compare and what they cancel:

- "registered-difference" (the default): each frame against reference frames after cancelling
  the head's motion and the light's change by a linearised registration -- the Lucas-Kanade
  image alignment (Lucas & Kanade, IJCAI 1981; Baker & Matthews, IJCV 2004) with an affine
  motion and a gain/offset that vary linearly across the face, solved in one least-squares step
  on blurred 64 px thumbnails. What the registration cannot explain is local deformation: the
  movement. Its energy is summed over 8x8 blocks and the top 5 % of blocks are kept, because a
  micro-expression moves a small part of the face (Moilanen et al. kept the top third of 36
  blocks; smaller blocks need a smaller share).
- "flow": the same, with dense optical flow (Farneback) in place of the intensity residual: the
  flow's affine part, fitted by least squares over the face, is the head motion and is removed;
  the remaining flow magnitude is the movement (optical-flow spotting in the manner of
  Shreve et al., FG 2011, and of the MEGC spotting baselines, which remove head motion by a
  stable reference region). Slower (one flow field per frame and reference) and noisier at
  sub-pixel amplitudes.
- "feature-difference": Moilanen, Zhao & Pietikainen, "Spotting rapid facial movements from
  videos using appearance-based feature difference analysis" (ICPR 2014): each frame against
  the mean of the frames `k` before and after, per block, mean of the top third of 36 blocks,
  with blurred thumbnails in place of LBP histograms. No head-motion model: a drift that is not
  linear in time within 2k frames shows up.
- "first-frame": the mean absolute difference from the first frame -- what merkit used before;
  kept as the baseline it is measured against. A slow head drift grows to the end of the clip,
  so its peak is often the last frame.

Onset- and offset-referenced profiles. "registered-difference" and "flow" compare frame t with
the frames `reach` before and after it (clamped to the clip) and keep the smaller of the two
motions: in a dataset episode (onset..offset, reach = the whole clip) those are the onset and the
offset, so a drift that grows steadily cannot make an end frame the peak (it is zero against
itself), and a movement is counted only where the face differs from both neutral ends. In a long
recording the reach is the spotting window, so the references stay near the frame and the drift
between them small. This is the drift model: only what differs from both sides counts.

Blinks: a blink moves the lids further than a micro-expression moves anything, so "registered-
difference" and "flow" leave the eye regions (found by `merkit.preprocess.eyes`) out of both the
registration and the motion: the eyes alone cannot decide. A clip where only the eyes move then
has no clear peak, and its confidence is low.

Confidence (0..1): the share of the peak's height that stands above both the no-motion level
(the median motion between consecutive frames, which hardly move at 100-200 fps) and the highest
other peak of the profile. 0.9 means a single peak ten times the noise; near 0, no clear peak.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from merkit.errors import ConfigError
from merkit.preprocess.config import DEFAULT_SPOTTING
from merkit.preprocess.eyes import Eyes, find_eyes
from merkit.preprocess.flow import compute_flow

# Frames are shrunk to this width (keeping aspect) and blurred before they are compared: noise and
# compression artefacts average out, facial motion (several pixels wide) survives.
PROFILE_WIDTH = 64
BLOCK = 8  # thumbnail pixels per block side (an eighth of the face)
TOP_SHARE = 0.05  # share of the blocks whose motion counts
FD_TOP_SHARE = 1 / 3  # Moilanen et al.: the top third of the blocks
FD_GRID = 6  # Moilanen et al.: a 6x6 grid of blocks
BORDER = 2  # thumbnail pixels left out at the edge (gradients, warps) and around the eyes (blur)
NOISE_PAIRS = 16  # consecutive-frame pairs that measure the no-motion level
FLOW_BLOCK = 16  # crop pixels per block side for "flow" (the crop is 2x the thumbnail)
CHUNK = 32  # frames registered at once (bounds the memory of the stacked bases)
WINDOW_SECONDS = 0.2  # spotting window in a recording: a micro-expression's onset-to-offset time


def default_window(fps: float) -> int:
    """The spotting window in frames at `fps` (WINDOW_SECONDS, at least 4 frames)."""
    return max(4, round(WINDOW_SECONDS * fps))


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


# --- what each method compares ------------------------------------------------------------------


@dataclass
class Faces:
    """A clip's aligned faces with what the measures derive from them, computed once."""

    frames: np.ndarray  # (T, H, W) grayscale
    eyes: Eyes | None = None

    @cached_property
    def thumbs(self) -> np.ndarray:
        return thumbnails(self.frames)

    def keep(self, shape: tuple[int, int], margin: int) -> np.ndarray:
        """Pixels of an image of `shape` that take part: not within `margin` of its edge or of
        the eyes (blurring spreads a blink's change about that far)."""
        keep = np.zeros(shape, bool)
        keep[margin : shape[0] - margin, margin : shape[1] - margin] = True
        if self.eyes is not None:
            disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
            keep &= cv2.dilate(self.eyes.mask(shape).astype(np.uint8), disk) == 0
        return keep

    @cached_property
    def thumb_keep(self) -> np.ndarray:
        return self.keep(self.thumbs.shape[1:], BORDER)

    @cached_property
    def fit_grid(self) -> np.ndarray:
        grid = np.zeros(self.thumbs.shape[1:], bool)
        grid[::2, ::2] = True
        return grid

    @cached_property
    def gradients(self) -> np.ndarray:
        """(T, 2, h, w): d/dx and d/dy of every thumbnail."""
        gy, gx = np.gradient(self.thumbs, axis=(1, 2))
        return np.stack([gx, gy], axis=1)

    @cached_property
    def planes(self) -> np.ndarray:
        """(3, h, w): 1, x and y across the thumbnail, centred (-0.5..0.5)."""
        height, width = self.thumbs.shape[1:]
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        return np.stack([np.ones_like(xs), xs / width - 0.5, ys / height - 0.5])


# A measure compares frames[i] with the mean of frames[refs[i]] for every i: (N,), (N, R) -> (N,).
Measure = Callable[[Faces, np.ndarray, np.ndarray], np.ndarray]


def _top_blocks(energy: np.ndarray, block: int, share: float) -> np.ndarray:
    """Mean of the `share` of (block x block) cells with the most energy: (N, h, w) -> (N,)."""
    n, height, width = energy.shape
    rows, cols = max(1, height // block), max(1, width // block)
    bh, bw = height // rows, width // cols
    cells = energy[:, : rows * bh, : cols * bw].reshape(n, rows, bh, cols, bw).mean(axis=(2, 4))
    cells = cells.reshape(n, -1)
    k = max(1, round(cells.shape[1] * share))
    return np.partition(cells, -k, axis=1)[:, -k:].mean(axis=1)


def registered_difference(faces: Faces, frames: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Energy of what registration onto the reference leaves, in the busiest blocks (N,).

    To first order, head motion and lighting change a reference image f by a combination of 12
    images: the gradients f_x, f_y (motion), 1 (offset) and f (gain), each times 1, x and y
    (affine motion, planar light). Their least-squares fit is what registration explains; it is
    solved on every other kept pixel in each direction (ample for 12 unknowns, four times
    faster) and subtracted on all of them.
    """
    thumbs, keep = faces.thumbs, faces.thumb_keep.reshape(-1)
    fit = keep & faces.fit_grid.reshape(-1)
    count, pixels = len(frames), thumbs[0].size
    flat = thumbs.reshape(len(thumbs), pixels)
    grads = faces.gradients.reshape(len(thumbs), 2, pixels)
    planes = faces.planes.reshape(3, pixels)
    out = np.zeros(count)
    for start in range(0, count, CHUNK):
        chunk, frame = refs[start : start + CHUNK, 0], frames[start : start + CHUNK]
        ref, which = np.unique(chunk, return_inverse=True)  # frames often share a reference
        gx, gy, image = grads[ref, 0], grads[ref, 1], flat[ref] / 255
        sampled = np.stack([gx[:, fit], gy[:, fit], np.ones_like(image[:, fit]), image[:, fit]], 1)
        basis = (sampled[:, :, None] * planes[None, None, :, fit]).reshape(len(ref), 12, -1)
        gram = (basis @ basis.transpose(0, 2, 1)).astype(np.float64) + 1e-9 * np.eye(12)
        diff = flat[frame] - flat[chunk]
        rhs = basis[which] @ diff[:, fit, None]
        coef = np.linalg.solve(gram[which], rhs).astype(np.float32).reshape(len(chunk), 4, 3)
        field = coef @ planes  # (n, 4, P): the fitted motion and light planes
        gx, gy, image = gx[which], gy[which], image[which]
        explained = gx * field[:, 0] + gy * field[:, 1] + field[:, 2] + image * field[:, 3]
        residual = (diff - explained) ** 2 * keep
        out[start : start + len(chunk)] = _top_blocks(
            residual.reshape(len(chunk), *thumbs.shape[1:]), BLOCK, TOP_SHARE
        )
    return out


def flow_difference(faces: Faces, frames: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Magnitude of the flow from the reference that its affine part does not explain (N,)."""
    crop = faces.frames
    height, width = crop.shape[1:]
    keep = faces.keep((height, width), 2 * BORDER).ravel()
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    affine = np.stack([np.ones(height * width), xs.ravel() / width, ys.ravel() / height], axis=1)
    energy = np.zeros((len(frames), height, width))
    for i, (frame, ref) in enumerate(zip(frames, refs[:, 0], strict=True)):
        if frame == ref:
            continue
        flow = compute_flow(crop[ref], crop[frame], "farneback").reshape(-1, 2).astype(np.float64)
        coef = np.linalg.lstsq(affine[keep], flow[keep], rcond=None)[0]
        residual = ((flow - affine @ coef) ** 2).sum(axis=1) * keep
        energy[i] = residual.reshape(height, width)
    return _top_blocks(energy, FLOW_BLOCK, TOP_SHARE)


def block_difference(faces: Faces, frames: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Moilanen et al.'s feature difference: against the mean of the references, per block of a
    6x6 grid, mean of the top third of the blocks (N,)."""
    thumbs = faces.thumbs
    reference = thumbs[refs].mean(axis=1)
    block = max(1, min(thumbs.shape[1:]) // FD_GRID)
    return _top_blocks(np.abs(thumbs[frames] - reference), block, FD_TOP_SHARE)


def mean_difference(faces: Faces, frames: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Mean absolute difference over the whole face (N,)."""
    thumbs = faces.thumbs
    return np.abs(thumbs[frames] - thumbs[refs].mean(axis=1)).mean(axis=(1, 2))


def motion_profile(frames: np.ndarray, reference: int = 0) -> np.ndarray:
    """Mean absolute difference of every frame from `frames[reference]` (T,), unsmoothed: the
    earlier spotting's measure, and a plain motion curve where nothing was spotted."""
    count = len(frames)
    return mean_difference(Faces(frames), np.arange(count), np.full((count, 1), reference))


# --- the methods ------------------------------------------------------------------------------

BOTH_SIDES = "both-sides"  # min of the motions against the frames `reach` before and after
AROUND = "around"  # against the mean of the frames a quarter `reach` before and after
FIRST = "first"  # against the first frame


@dataclass(frozen=True)
class SpottingMethod:
    """A named way to compute the motion profile, and what it follows."""

    name: str
    measure: Measure = field(repr=False)
    references: str  # BOTH_SIDES, AROUND or FIRST
    masks_eyes: bool
    follows: str


# In the order of `merkit.preprocess.config.SPOTTING_METHODS`, which names them without OpenCV.
METHODS: dict[str, SpottingMethod] = {
    m.name: m
    for m in (
        SpottingMethod(
            "registered-difference",
            registered_difference,
            BOTH_SIDES,
            masks_eyes=True,
            follows="Lucas-Kanade affine registration (Baker & Matthews, IJCV 2004) of "
            "onset- and offset-referenced frames; eye regions masked",
        ),
        SpottingMethod(
            "flow",
            flow_difference,
            BOTH_SIDES,
            masks_eyes=True,
            follows="optical-flow magnitude with the affine head motion removed (Shreve et al., "
            "FG 2011; MEGC spotting baselines); onset- and offset-referenced; eyes masked",
        ),
        SpottingMethod(
            "feature-difference",
            block_difference,
            AROUND,
            masks_eyes=False,
            follows="feature difference, Moilanen, Zhao & Pietikainen, ICPR 2014 "
            "(thumbnail blocks in place of LBP histograms)",
        ),
        SpottingMethod(
            "first-frame",
            mean_difference,
            FIRST,
            masks_eyes=False,
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


# --- spotting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spot:
    """Where a clip's movement peaks: its apex index, the motion curve and how clear its peak is."""

    apex: int
    profile: np.ndarray  # (T,) smoothed motion per frame, in the method's units
    confidence: float  # 0..1, see the module docstring
    noise: float  # the no-motion level of the profile
    method: str
    eyes: str  # how the eye regions were found ("landmarks", "eye-detector"), or "none"


def _profile(method: SpottingMethod, faces: Faces, reach: int) -> np.ndarray:
    count = len(faces.frames)
    t = np.arange(count)
    if method.references == FIRST:
        return method.measure(faces, t, np.zeros((count, 1), int))
    if method.references == AROUND:
        half = max(1, reach // 4)
        # Moilanen et al. compare only frames with both references inside the clip.
        inside = t[half : count - half] if count > 2 * half else t[count // 2 : count // 2 + 1]
        refs = np.clip(np.stack([inside - half, inside + half], axis=1), 0, count - 1)
        profile = np.zeros(count)
        profile[inside] = method.measure(faces, inside, refs)
        return profile
    # References on a grid of a tenth of the reach, so that neighbouring frames share them.
    step = max(1, reach // 10)
    before = np.clip((t - reach) // step * step, 0, count - 1)
    after = np.clip(-((-t - reach) // step) * step, 0, count - 1)
    motion = [method.measure(faces, t, r[:, None]) for r in (before, after)]
    return np.minimum(*motion)


def _noise_level(method: SpottingMethod, faces: Faces) -> float:
    """Median motion between consecutive frames (at most NOISE_PAIRS pairs, spread evenly)."""
    count = len(faces.frames)
    frames = np.unique(np.linspace(1, count - 1, min(NOISE_PAIRS, count - 1)).round().astype(int))
    return float(np.median(method.measure(faces, frames, frames[:, None] - 1)))


def smooth(profile: np.ndarray, width: int) -> np.ndarray:
    """Hann-weighted moving average over `width` frames (odd), edges padded with their values."""
    if width <= 1 or len(profile) < 3:
        return profile.astype(np.float64)
    kernel = np.hanning(width + 2)[1:-1]
    padded = np.pad(profile.astype(np.float64), width // 2, mode="edge")
    return np.convolve(padded, kernel / kernel.sum(), mode="valid")


def confidence(profile: np.ndarray, apex: int, noise: float) -> float:
    """Share of the peak above both the noise level and the highest other local maximum."""
    peak = float(profile[apex])
    if peak <= 0:
        return 0.0
    half = noise + 0.5 * (peak - noise)
    low, high = apex, apex
    while low > 0 and profile[low - 1] >= half:
        low -= 1
    while high < len(profile) - 1 and profile[high + 1] >= half:
        high += 1
    padded = np.pad(profile, 1, mode="constant", constant_values=-np.inf)
    maxima = (profile >= padded[:-2]) & (profile >= padded[2:])
    maxima[low : high + 1] = False
    rival = float(profile[maxima].max()) if maxima.any() else 0.0
    return float(np.clip((peak - max(noise, rival)) / peak, 0.0, 1.0))


def spot(
    frames: np.ndarray,
    method: str = DEFAULT_SPOTTING,
    window: int | None = None,
    eyes: Eyes | None = None,
) -> Spot:
    """Spot the apex of the movement in aligned grayscale faces (T, H, W).

    `window` (frames): how far the references reach in a long recording; None takes the clip as
    one episode (onset to offset) and compares with its two ends. `eyes` defaults to those found
    on the first frame (else the last, else the middle one) for the methods that mask them.
    """
    spotter = get_method(method)
    count = len(frames)
    if count < 2:
        return Spot(0, np.zeros(count), 0.0, 0.0, spotter.name, "none")
    if spotter.masks_eyes and eyes is None:
        eyes = next((e for i in (0, count - 1, count // 2) if (e := find_eyes(frames[i]))), None)
    faces = Faces(frames, eyes if spotter.masks_eyes else None)
    reach = count - 1 if window is None else int(np.clip(window, 1, count - 1))
    width = max(1, reach // 4) | 1
    profile = smooth(_profile(spotter, faces, reach), width)
    inner = profile[1:-1] if spotter.references == BOTH_SIDES and count > 2 else profile
    apex = int(np.argmax(inner)) + (len(profile) - len(inner)) // 2
    noise = _noise_level(spotter, faces)
    found = faces.eyes.source if faces.eyes is not None else "none"
    return Spot(apex, profile, confidence(profile, apex, noise), noise, spotter.name, found)


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


def fit_movement(faces: np.ndarray, apex: int, window: int) -> tuple[int, int]:
    """(onset, offset) of the movement whose apex was spotted at `apex`, by a template fit.

    The profile is the focused motion of each frame against the frame `window` before the apex,
    smoothed over a tenth of a window (codecs add a periodic quality ripple); the model is
    `a + b * t + c * raised_cosine(t)` with c > 0 (the linear term absorbs head drift and
    lighting change), its peak at the apex, searched over onset/offset between an eighth of a
    window and a window from it. The fit uses every frame of the movement, so noise delays the
    onset far less than it delays a threshold crossing. The apex itself stays where `spot` put it:
    this profile, referenced to one frame, would drift towards the clip's end with the head.
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
    top = int(np.clip(apex - first - 1, 1, n - 2))
    candidates = np.array(
        [
            (on, top, off)
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
    on, _, off = candidates[int(np.argmin(residual))].astype(int) + first + 1
    last = len(faces) - 1
    return int(np.clip(on, 0, apex)), int(np.clip(off, apex, last))
