"""A synthetic clip's geometric truth: the true optical flow between any two of its frames and its
68 landmarks in every frame, which the generator knows because it drew the motion
(`merkit.synthetic.clips.render_clip_motion`). What flow and landmark outputs (MOL's heads,
TV-L1, Farneback, DIS) are measured against."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def rigid_source(
    x: np.ndarray, y: np.ndarray, centre: np.ndarray, shift: np.ndarray, angle: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where the head pose (`shift`, `angle`: one frame's, or (T, ...) broadcast against x, y)
    reads points (x, y) from: a rotation about the face centre, then a translation."""
    dx, dy = x - centre[0], y - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    return cos * dx + sin * dy + centre[0] - shift[..., 0], cos * dy - sin * dx + centre[1] - shift[
        ..., 1
    ]


@dataclass(frozen=True)
class ClipMotion:
    """A rendered clip's geometric truth: where each point of each frame was read from.

    Frame t shows at (x, y) the neutral face's point `source(t, x, y)`: the head pose (`shift`
    (T, 2) px, `angle` (T,) rad, about `centre`) and the skin displacement (`displacement`
    (T, 2, H, W), held constant beyond the frame's edge); blinks and lighting are not motion.
    `flow` and `track` invert it by fixed-point iteration, which converges because it stays
    within a few pixels and a fraction of a degree of the identity. The pose is analytic, so
    points beyond the frame (a chin below it) are tracked too.
    """

    centre: np.ndarray
    shift: np.ndarray
    angle: np.ndarray
    displacement: np.ndarray
    neutral_points: np.ndarray  # (68, 2) the subject's points on the neutral face

    def source(self, t: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The neutral-face points that frame t shows at float32 (x, y) (2-D arrays)."""
        rx, ry = rigid_source(x, y, self.centre, self.shift[t], self.angle[t])
        dx, dy = (
            cv2.remap(d, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            for d in self.displacement[t]
        )
        return rx - dx, ry - dy

    def _solve(
        self, t: int, sx: np.ndarray, sy: np.ndarray, guess: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions (x, y) in frame t that show the neutral points (sx, sy)."""
        x, y = guess
        for _ in range(10):
            fx, fy = self.source(t, x, y)
            x, y = (x - (fx - sx)).astype(np.float32), (y - (fy - sy)).astype(np.float32)
        return x, y

    def flow(self, first: int, second: int) -> np.ndarray:
        """(2, H, W) true displacement from frame `first` to `second` in OpenCV's convention
        (the skin at x in `first` is at x + flow(x) in `second`), as `compute_flow` estimates."""
        y, x = np.mgrid[0 : self.displacement.shape[2], 0 : self.displacement.shape[3]]
        x, y = x.astype(np.float32), y.astype(np.float32)
        nx, ny = self._solve(second, *self.source(first, x, y), (x, y))
        return np.stack([nx - x, ny - y])

    def track(self) -> np.ndarray:
        """(T, 68, 2) the subject's 68 landmarks (`face_points68`) in every frame."""
        sx = np.ascontiguousarray(self.neutral_points[None, :, 0], dtype=np.float32)
        sy = np.ascontiguousarray(self.neutral_points[None, :, 1], dtype=np.float32)
        frames = [self._solve(t, sx, sy, (sx, sy)) for t in range(len(self.shift))]
        return np.stack([np.stack([x[0], y[0]], axis=1) for x, y in frames])
