"""Auxiliary training targets computed from a frame sequence, packed beside the frames.

MOL learns micro-expressions jointly with optical flow and facial landmarks. Its supervision
travels INSIDE the input array, so the engine, the cache and the fold logic stay generic: one
sample is a "sequence" array (T, 4, S, S) whose per-frame channels are

    PACKED_CHANNELS = ("gray", "u", "v", "landmarks")

- gray: the frame, 0..1, as `prepare(output="sequence")` produced it;
- u, v: the optical flow from frame t-1 to frame t, in pixels of the S x S frame (zero at t=0);
- landmarks: a heatmap of the frame's 68 dlib landmarks, the maximum over Gaussians of
  `sigma` pixels centred on the points (0..1).

The model reads only the gray channel as input and slices the rest off as targets; at inference
`pack_sequence(frames, targets=False)` leaves them zero. As with any sequence, the model sees the
array flattened to (T * 4, S, S) (see `merkit.models.layers`).
"""

from __future__ import annotations

import numpy as np

from merkit.errors import DataLayoutError
from merkit.preprocess.face import face_landmarks
from merkit.preprocess.flow import compute_flow

PACKED_CHANNELS = ("gray", "u", "v", "landmarks")


def _uint8(frame: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)


def consecutive_flow(frames: np.ndarray, method: str = "farneback") -> np.ndarray:
    """(T, 2, H, W) float32: flow t-1 -> t in pixels for t >= 1; frame 0 has zero flow.

    `frames` are (T, H, W) grey frames in 0..1. Farneback is the default because these targets
    are computed for every pair of every clip; TV-L1 ("tvl1") is ~50x slower.
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


def landmark_heatmap(landmarks: np.ndarray, size: int, sigma: float = 1.5) -> np.ndarray:
    """(size, size) float32: max over the points (N, 2) of Gaussians of `sigma` pixels."""
    grid = np.arange(size, dtype=np.float32)
    gx = np.exp(-((grid[None, :] - landmarks[:, :1]) ** 2) / (2 * sigma**2))  # (N, size)
    gy = np.exp(-((grid[None, :] - landmarks[:, 1:]) ** 2) / (2 * sigma**2))
    return np.max(gy[:, :, None] * gx[:, None, :], axis=0).astype(np.float32)


def frame_landmarks(frame: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(68, 2) dlib landmarks of an aligned grey face crop (0..1), found in its known face box."""
    return face_landmarks(_uint8(frame), landmark_box(frame.shape[-1], margin))


def pack_sequence(
    frames: np.ndarray,
    *,
    targets: bool = True,
    flow: str = "farneback",
    sigma: float = 1.5,
    margin: float = 0.0,
) -> np.ndarray:
    """(T, 1, S, S) grey frames -> (T, 4, S, S) float32 [gray, u, v, landmarks] (see module).

    `margin` is the crop padding the frames were prepared with (PrepareConfig.margin; 0 for
    cropped releases). `targets=False` leaves the target channels zero (inference).
    """
    if frames.ndim != 4 or frames.shape[1] != 1 or frames.shape[2] != frames.shape[3]:
        raise DataLayoutError(
            f"pack_sequence expects (T, 1, S, S) grey frames (prepare output='sequence', "
            f"color=False), got {frames.shape}"
        )
    gray = frames[:, 0].astype(np.float32)
    packed = np.zeros((len(gray), len(PACKED_CHANNELS), *gray.shape[1:]), np.float32)
    packed[:, 0] = gray
    if targets:
        packed[:, 1:3] = consecutive_flow(gray, flow)
        for t, frame in enumerate(gray):
            packed[t, 3] = landmark_heatmap(frame_landmarks(frame, margin), frame.shape[-1], sigma)
    return packed


def pack_sequences(x: np.ndarray, **options: object) -> np.ndarray:
    """(N, T, 1, S, S) prepared sequences -> (N, T, 4, S, S); `options` as `pack_sequence`."""
    if len(x) == 0:
        return np.zeros((0, x.shape[1], len(PACKED_CHANNELS), *x.shape[3:]), np.float32)
    return np.stack([pack_sequence(clip, **options) for clip in x])
