"""Auxiliary training targets computed from a frame sequence, packed beside the frames.

MOL learns micro-expressions jointly with optical flow and facial landmarks. Its supervision
travels INSIDE the input array, so the engine, the cache and the fold logic stay generic: one
sample is a "sequence" array (T, 4, S, S) whose per-frame channels are

    PACKED_CHANNELS = ("gray", "u", "v", "landmarks")
LANDMARKS = 68
LANDMARK_VALUES = 2 * LANDMARKS  # interleaved x, y

- gray: the frame, 0..1, as `prepare(output="sequence")` produced it;
- u, v: the optical flow from frame t-1 to frame t (OpenCV's convention: frame t-1 at x matches
  frame t at x + flow), in pixels of the S x S frame; zero at t = 0. TV-L1 by default, as MOL's
  authors (OpenCV's DualTVL1 with its defaults, between consecutive 8-bit grey frames);
- landmarks: a plane of numbers, not an image: the frame's 68 landmarks (dlib's points, from
  merkit's face stage) as 136 pixel coordinates x0, y0, x1, y1, ... in the first 136 entries of
  the row-major flattened plane; the rest of the plane is zero.

The model reads only the gray channel as input and slices the rest off as targets (it crops
frames, flow and landmarks together); at inference `pack_sequence(frames, targets=False)` leaves
them zero. As with any sequence, the model sees the array flattened to (T * 4, S, S) (see
`merkit.models.layers`). The engine's geometric augmentations would move the coordinate plane
like an image, so a model reading packed targets takes none (`merkit.training.config` refuses).
"""

from __future__ import annotations

import numpy as np

from merkit.errors import DataLayoutError
from merkit.preprocess.arrays import as_float32
from merkit.preprocess.face import face_landmarks
from merkit.preprocess.flow import compute_flow

PACKED_CHANNELS = ("gray", "u", "v", "landmarks")
LANDMARKS = 68
LANDMARK_VALUES = 2 * LANDMARKS  # interleaved x, y


def _uint8(frame: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)


def consecutive_flow(frames: np.ndarray, method: str = "tvl1") -> np.ndarray:
    """(T, 2, H, W) float32: flow t-1 -> t in pixels for t >= 1; frame 0 has zero flow.

    `frames` are (T, H, W) grey frames in 0..1; `method` one of merkit's flow methods (TV-L1,
    MOL's authors' choice, is 10-50x slower than Farneback or DIS).
    """
    if frames.ndim != 3:
        raise DataLayoutError(f"consecutive_flow expects (T, H, W) grey frames, got {frames.shape}")
    out = np.zeros((len(frames), 2, *frames.shape[1:]), np.float32)
    images = [_uint8(f) for f in frames]
    for t in range(1, len(frames)):
        out[t] = compute_flow(images[t - 1], images[t], method).transpose(2, 0, 1)
    return out


def landmark_box(size: int, margin: float) -> tuple[int, int, int, int]:
    """The face box inside an aligned `size` crop that was padded by `margin` on every side.

    `prepare` centres the face box in its crop and pads it by `margin` of its side; cropped
    releases (margin 0) are the face box themselves.
    """
    inset = round(size * margin / (1 + 2 * margin))
    return inset, inset, size - 1 - inset, size - 1 - inset


def landmark_plane(points: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32 plane holding the (68, 2) `points` as the module docstring says."""
    if points.shape != (LANDMARKS, 2) or size * size < LANDMARK_VALUES:
        raise DataLayoutError(
            f"landmark_plane needs (68, 2) points and a plane of at least {LANDMARK_VALUES} "
            f"entries, got {points.shape} and {size} x {size}"
        )
    plane = np.zeros(size * size, np.float32)
    plane[:LANDMARK_VALUES] = points.reshape(-1)
    return plane.reshape(size, size)


def plane_landmarks(plane: np.ndarray) -> np.ndarray:
    """(68, 2) points read back from a landmark plane (the inverse of `landmark_plane`)."""
    return plane.reshape(-1)[:LANDMARK_VALUES].reshape(LANDMARKS, 2).astype(np.float32)


def frame_landmarks(frame: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(68, 2) dlib landmarks of an aligned grey face crop (0..1), found in its known face box."""
    return face_landmarks(_uint8(frame), landmark_box(frame.shape[-1], margin))


def pack_sequence(
    frames: np.ndarray,
    *,
    targets: bool = True,
    flow: str = "tvl1",
    margin: float = 0.0,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """(T, 1, S, S) grey frames (0..1, or stored uint8) -> (T, 4, S, S) float32 [gray, u, v,
    landmarks] (see module).

    `margin` is the crop padding the frames were prepared with (PrepareConfig.margin; 0 for
    cropped releases), which tells dlib where the face box is. `landmarks` (T, 68, 2), when
    given (e.g. a synthetic clip's true points), replaces dlib's. `targets=False` leaves the
    target channels zero (inference).
    """
    if frames.ndim != 4 or frames.shape[1] != 1 or frames.shape[2] != frames.shape[3]:
        raise DataLayoutError(
            f"pack_sequence expects (T, 1, S, S) grey frames (prepare output='sequence', "
            f"color=False), got {frames.shape}"
        )
    gray = as_float32(frames[:, 0])
    size = gray.shape[-1]
    packed = np.zeros((len(gray), len(PACKED_CHANNELS), size, size), np.float32)
    packed[:, 0] = gray
    if targets:
        packed[:, 1:3] = consecutive_flow(gray, flow)
        for t, frame in enumerate(gray):
            points = frame_landmarks(frame, margin) if landmarks is None else landmarks[t]
            packed[t, 3] = landmark_plane(np.asarray(points), size)
    return packed


def pack_sequences(
    x: np.ndarray, landmarks: np.ndarray | None = None, **options: object
) -> np.ndarray:
    """(N, T, 1, S, S) prepared sequences -> (N, T, 4, S, S); `landmarks` (N, T, 68, 2) if
    known, `options` as `pack_sequence`."""
    if len(x) == 0:
        return np.zeros((0, x.shape[1], len(PACKED_CHANNELS), *x.shape[3:]), np.float32)
    return np.stack(
        [
            pack_sequence(clip, landmarks=None if landmarks is None else landmarks[i], **options)
            for i, clip in enumerate(x)
        ]
    )
