"""What happens in one test clip, whatever face it is rendered on: `ClipSpec`, and the time
courses it implies (the movement's profile, the head's pose, the lids' closure), plus the
nuisances applied to rendered frames (face-filling upscale, JPEG).

Times are in frames of the clip's own rate (`fps`), drawn by `merkit.synthetic.scenarios` from
durations in milliseconds, so a 30 fps clip and a 200 fps clip of the same movement differ as
real recordings do.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from merkit.synthetic.clips import Blink, blink_closure

# Shapes of the rise (onset -> apex) and the fall (apex -> offset), p running 0 -> 1.
RISES = {
    "cosine": lambda p: 0.5 - 0.5 * np.cos(np.pi * p),
    "linear": lambda p: p,
    "ease-out": lambda p: 1 - (1 - p) ** 2,
}
FALLS = {
    "cosine": lambda q: 0.5 + 0.5 * np.cos(np.pi * q),
    "linear": lambda q: 1 - q,
    "ease-in": lambda q: (1 - q) ** 2,
}


@dataclass(frozen=True)
class ClipSpec:
    """One clip: its rate and length, the movement (0-based frames), and the nuisances."""

    group: str
    fps: float
    n_frames: int
    onset: int
    apex: int
    offset: int
    codes: str  # action units, "+"-separated ("5", "L12+R12")
    amplitude: float  # peak displacement in pixels of the rendered frame
    rise: str = "cosine"  # RISES
    fall: str = "cosine"  # FALLS
    drift_px: float = 0.0  # head translation from the first to the last frame
    drift_deg: float = 0.0  # head rotation across the clip
    drift_scale: float = 0.0  # relative size change across the clip (towards the camera)
    blinks: tuple[Blink, ...] = ()
    noise_std: float = 1.5  # sensor noise, grey levels
    light: float = 0.02  # largest relative brightness change across the clip
    jpeg_quality: int = 90  # of the written frames
    fill: tuple[int, int] | None = None  # (width, height): the face upscaled to fill the frame

    @property
    def units(self) -> list[str]:
        return [c for c in self.codes.split("+") if c]


def episode_profile(spec: ClipSpec) -> np.ndarray:
    """(T,) 0 before onset, rising to 1 at the apex, back to 0 at offset."""
    t = np.arange(spec.n_frames, dtype=np.float64)
    p = np.clip((t - spec.onset) / max(spec.apex - spec.onset, 1), 0, 1)
    q = np.clip((t - spec.apex) / max(spec.offset - spec.apex, 1), 0, 1)
    return np.where(t <= spec.apex, RISES[spec.rise](p), FALLS[spec.fall](q)).astype(np.float32)


def head_pose(
    spec: ClipSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: translation (T, 2) px, rotation (T,) rad and scale (T,): a smooth ramp to a
    random end pose with a slow wobble of a fifth of it, starting from the identity."""
    n = spec.n_frames
    ramp = np.linspace(0.0, 1.0, n) ** rng.uniform(0.7, 1.4)
    wobble = np.sin(np.linspace(0, np.pi * rng.uniform(1, 3), n) + rng.uniform(0, 2 * np.pi))
    wobble = wobble - wobble[0]
    heading = rng.uniform(0, 2 * np.pi, size=2)
    end = spec.drift_px * np.array([np.cos(heading[0]), np.sin(heading[0])])
    side = 0.2 * spec.drift_px * np.array([np.cos(heading[1]), np.sin(heading[1])])
    shift = ramp[:, None] * end + wobble[:, None] * side
    angle = np.deg2rad(spec.drift_deg * rng.choice([-1, 1])) * ramp
    scale = 1.0 + spec.drift_scale * rng.choice([-1, 1]) * ramp
    return shift.astype(np.float32), angle.astype(np.float32), scale.astype(np.float32)


def blink_track(spec: ClipSpec) -> np.ndarray:
    """(T,) lid closure of the clip's blinks (0 open .. 1 shut)."""
    closure = np.zeros(spec.n_frames, np.float32)
    for blink in spec.blinks:
        closure = np.maximum(closure, blink_closure(spec.n_frames, blink))
    return closure


def fill_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Square face crops (T, S, S) upscaled to cover a (width, height) frame, cut to it round
    the middle: a face that fills the picture, as a close-up camera films it."""
    width, height = size
    side = max(width, height)
    top, left = (side - height) // 2, (side - width) // 2
    return np.stack(
        [
            cv2.resize(frame, (side, side), interpolation=cv2.INTER_CUBIC)[
                top : top + height, left : left + width
            ]
            for frame in frames
        ]
    )
