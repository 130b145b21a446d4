"""Every frame of a clip registered onto one reference face, so that head drift never counts as
movement, however slow or long.

Aligned crops are aligned once, on one frame, so a head that drifts over hundreds of frames (200
fps recordings are seconds long) moves several pixels in the crop. Comparing frames directly,
or registering each pair by one linearised step, fails once that displacement exceeds the blur:
the drift wins. Here every frame is registered to the clip's reference face by Gauss-Newton
image alignment (Lucas & Kanade, IJCAI 1981; the fixed template Jacobian of Baker & Matthews'
inverse compositional form, IJCV 2004) with an affine motion and a gain plus a planar offset of
the light, coarse to fine over a three-level pyramid, which holds displacements of several
pixels. The motion is estimated at a quarter and half of the resolution, first against the
middle frame, then against the temporal median of the registered clip (a neutral, noise-free
face); a last linear step at full resolution, on every other pixel each way, places the edges
twice as finely (that step is what finds a lid moved by half a pixel). What registration cannot
explain -- the residual of each frame against the reference -- is local deformation: the
movement, and blinks. Pixels near the edge are left out, by as far as the clip's motion reaches
(a moved frame shows there what lay beyond it).

The residuals (and the median face) are resampled by Lanczos interpolation, the motion estimate
by bicubic. A bicubic kernel blurs an image more at half-pixel positions than at whole ones, so
as a head drifts by a few pixels the texture of a photographed face pulses with the sub-pixel
phase of the drift, and the pulse can outweigh a 1 px movement: on ten of MEGC2019's apex photos,
the largest block energy of a 1 px lip-corner pull over that of a pure shift of 0-1 px was 0.6
at worst with bicubic residuals, 1.3 with Lanczos (medians 16 and 18).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LEVELS = 3  # pyramid levels: full, half, quarter
ITERATIONS = (3, 1)  # Gauss-Newton steps on the quarter and the half, against the middle frame
FINAL_ITERATIONS = 1  # steps on the half, against the median face
MEDIAN_FRAMES = 25  # frames (evenly spread) whose median is the reference face
BORDER_SHARE = 1 / 32  # of the width, left out at the image edge (what lies beyond moves in)


@dataclass(frozen=True)
class Registered:
    """A clip registered onto its reference: per-frame residuals and motion."""

    residuals: np.ndarray  # (T, h/2, w/2): what neither motion nor light explains, every
    # other pixel each way
    reference: np.ndarray  # (h, w) the reference face
    motion: np.ndarray  # (T, 6) affine displacement parameters, pixels (see `_sources`)
    valid: np.ndarray  # (h, w) bool: pixels that took part


def _coordinates(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates about the image centre, in image widths (-0.5..0.5)."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return (xs - (width - 1) / 2) / width, (ys - (height - 1) / 2) / width


def warp_matrices(motion: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(T, 2, 3) maps from reference pixels to frame pixels of displacement parameters `motion`
    (T, 6): dx = p0 + p1 u + p2 v, dy = p3 + p4 u + p5 v (pixels; u, v in image widths from
    the centre)."""
    height, width = shape
    cx, cy = (width - 1) / 2, (height - 1) / 2
    p = motion.astype(np.float64)
    a, b, c, d = (p[:, i] / width for i in (1, 2, 4, 5))
    rows = [1 + a, b, p[:, 0] - a * cx - b * cy, c, 1 + d, p[:, 3] - c * cx - d * cy]
    return np.stack(rows, axis=1).reshape(-1, 2, 3).astype(np.float32)


def warp_all(
    images: np.ndarray, motion: np.ndarray, step: int = 1, fine: bool = False
) -> np.ndarray:
    """Each image resampled at its displacement: the frames seen in the reference's geometry
    (samples beyond a frame take its edge), at every `step`-th pixel each way; `fine`: by
    Lanczos interpolation (see the module), else bicubic."""
    height, width = images.shape[1:]
    size = -(-width // step), -(-height // step)
    flags = (cv2.INTER_LANCZOS4 if fine else cv2.INTER_CUBIC) | cv2.WARP_INVERSE_MAP
    matrices = warp_matrices(motion, images.shape[1:])
    matrices[:, :, :2] *= step
    out = np.empty((len(images), size[1], size[0]), images.dtype)
    for i, (image, matrix) in enumerate(zip(images, matrices, strict=True)):
        cv2.warpAffine(image, matrix, size, out[i], flags, cv2.BORDER_REPLICATE)
    return out


def _basis(reference: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(12, h*w) the first-order effects of motion (gradients times 1, u, v) and light (a
    planar gain and a planar offset) on the reference, zero outside its valid pixels."""
    gy, gx = np.gradient(reference)
    u, v = _coordinates(reference.shape)
    gain = reference / 255.0
    columns = [gx, gx * u, gx * v, gy, gy * u, gy * v, gain, gain * u, gain * v, 1 + 0 * u, u, v]
    return (np.stack(columns) * valid).reshape(len(columns), -1).astype(np.float32)


def _valid(shape: tuple[int, int], border: int) -> np.ndarray:
    valid = np.zeros(shape, bool)
    valid[border : shape[0] - border, border : shape[1] - border] = True
    return valid


def _solver(basis: np.ndarray) -> np.ndarray:
    """(12, P) the least-squares solution operator of `basis` (12, P)."""
    gram = (basis @ basis.T).astype(np.float64) + 1e-6 * np.eye(len(basis))
    return np.linalg.solve(gram, basis.astype(np.float64)).astype(np.float32)


def _solve(
    images: np.ndarray,
    reference: np.ndarray,
    motion: np.ndarray,
    steps: int,
    fitted: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Newton steps at one resolution, fitted on the `fitted` pixels: the motion after the
    last step, and that step's light coefficients (T, 6: gain and offset, each times 1, u, v)."""
    basis = _basis(reference, fitted)
    solver = _solver(basis)
    target = reference.reshape(-1) * fitted.reshape(-1)
    coef = np.zeros((len(images), len(basis)), np.float32)
    for _ in range(steps):
        difference = warp_all(images, motion).reshape(len(images), -1) * fitted.reshape(-1)
        coef = (difference - target) @ solver.T  # (T, 12)
        motion = motion - coef[:, :6]
    return motion, coef[:, 6:]


def _shrink(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(mask.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST) > 0


def _half(images: np.ndarray) -> np.ndarray:
    """(T, h, w) -> (T, h / 2, w / 2): means of 2x2 pixels, all frames in one call."""
    count, height, width = images.shape
    stacked = images[:, : height // 2 * 2, : width // 2 * 2].reshape(-1, width // 2 * 2)
    small = cv2.resize(stacked, (width // 2, count * (height // 2)), interpolation=cv2.INTER_AREA)
    return small.reshape(count, height // 2, width // 2)


def register(
    images: np.ndarray, ignore: np.ndarray | None = None, seen: np.ndarray | None = None
) -> Registered:
    """Register blurred faces (T, h, w) of one clip onto its reference (see the module).

    The motion is estimated on the half and quarter resolution (against the middle frame, then
    against the median face), which is precise to a few hundredths of a pixel there; the
    residuals are taken at full resolution, where a lid or lip edge moved by half a pixel still
    shows. `ignore` (h, w) marks pixels left out of the fit (the eyes: a blink would drag the
    whole face's registration), though their residuals are computed like all others; `seen`
    (h, w) the pixels that show the frame (only those take part at all).
    """
    images = images.astype(np.float32)
    count = len(images)
    skip = np.zeros(images.shape[1:], bool) if ignore is None else ignore.copy()
    if seen is not None:
        skip |= ~seen
    pyramid = [images]
    for _ in range(LEVELS - 1):
        pyramid.append(_half(pyramid[-1]))

    def fitted(level: int, motion: np.ndarray | None = None) -> np.ndarray:
        shape = pyramid[level].shape[1:]
        border = max(1, round(shape[1] * BORDER_SHARE))
        if motion is not None:
            border += _reach_beyond(motion, shape)
        return _valid(shape, border) & ~_shrink(skip, shape)

    motion = np.zeros((count, 6), np.float32)
    for level, steps in zip(range(LEVELS - 1, 0, -1), ITERATIONS, strict=True):
        scaled = pyramid[level]
        motion, _ = _solve(scaled, scaled[count // 2], motion, steps, fitted(level))
        if level > 1:
            motion = motion * 2.0
    sample = np.unique(np.linspace(0, count - 1, MEDIAN_FRAMES).round().astype(int))
    reference = np.median(warp_all(images[sample], 2 * motion[sample], fine=True), axis=0).astype(
        np.float32
    )
    half = pyramid[1]
    motion, _ = _solve(half, _half(reference[None])[0], motion, FINAL_ITERATIONS, fitted(1, motion))
    motion = motion * 2.0
    # The last step at full resolution, sampled at every other pixel each way (the gradients of
    # the full resolution, which locate an edge twice as finely; a quarter of the cost).
    border = round(reference.shape[1] * BORDER_SHARE) + _reach_beyond(motion, reference.shape)
    valid = _valid(reference.shape, border)[::2, ::2]
    if seen is not None:
        valid &= seen[::2, ::2]
    basis = _basis(reference, _valid(reference.shape, border)).reshape(12, *reference.shape)
    basis = basis[:, ::2, ::2].reshape(12, -1)
    fit = (valid & ~skip[::2, ::2]).reshape(-1)
    solver = _solver(basis * fit)
    difference = warp_all(images, motion, 2, fine=True) - reference[::2, ::2]
    difference = difference.reshape(count, -1) * valid.reshape(-1)
    coef = difference @ solver.T
    residuals = (difference - coef @ basis).reshape(count, *valid.shape)
    return Registered(residuals, reference, motion - coef[:, :6], valid)


def _reach_beyond(motion: np.ndarray, shape: tuple[int, int]) -> int:
    """Pixels by which the largest displacement of an image corner reaches: near the edge, a
    moved frame shows what lay beyond it, which no registration explains."""
    height, width = shape
    corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], float)
    u = (corners[:, 0] - (width - 1) / 2) / width
    v = (corners[:, 1] - (height - 1) / 2) / width
    dx = motion[:, 0:1] + motion[:, 1:2] * u + motion[:, 2:3] * v
    dy = motion[:, 3:4] + motion[:, 4:5] * u + motion[:, 5:6] * v
    return int(np.ceil(max(np.abs(dx).max(), np.abs(dy).max())))
