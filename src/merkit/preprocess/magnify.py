"""Linear Eulerian video magnification (Wu et al., SIGGRAPH 2012), Gaussian-pyramid variant.

Micro-expressions move the face by a pixel or two; amplifying the temporal variation of the
spatially low-passed clip makes that motion larger before flow is computed. Each frame is
blurred and down-sampled `levels` times, the resulting small clip is band-passed in time by an
ideal (FFT) filter, multiplied by `alpha`, up-sampled and added back to the frames.
Frequencies are in cycles per frame, so the same band works whatever the camera's frame rate
relative to the clip length; the mean over time (DC) is never amplified.
"""

from __future__ import annotations

import cv2
import numpy as np

from merkit.errors import ConfigError


def _down(frame: np.ndarray, levels: int) -> np.ndarray:
    for _ in range(levels):
        frame = cv2.pyrDown(frame)
    return frame


def temporal_bandpass(signal: np.ndarray, low: float, high: float) -> np.ndarray:
    """Ideal band-pass along axis 0 keeping frequencies in [low, high] cycles/frame, DC removed."""
    spectrum = np.fft.rfft(signal, axis=0)
    freqs = np.fft.rfftfreq(signal.shape[0])
    keep = (freqs >= low) & (freqs <= high) & (freqs > 0)
    spectrum[~keep] = 0
    return np.fft.irfft(spectrum, n=signal.shape[0], axis=0)


def magnify(
    frames: np.ndarray,
    alpha: float,
    band: tuple[float, float] = (0.05, 0.4),
    levels: int = 2,
) -> np.ndarray:
    """Magnified copy of grayscale frames (T, H, W) as float32 in the input's value range."""
    low, high = band
    if not 0 <= low < high <= 0.5:
        raise ConfigError(f"magnification band {band} must satisfy 0 <= low < high <= 0.5")
    clip = frames.astype(np.float32)
    if alpha == 0 or len(clip) < 3:
        return clip
    small = np.stack([_down(f, levels) for f in clip])
    boost = alpha * temporal_bandpass(small, low, high).astype(np.float32)
    height, width = clip.shape[1:3]
    return np.stack(
        [
            f + cv2.resize(b, (width, height), interpolation=cv2.INTER_LINEAR)
            for f, b in zip(clip, boost, strict=True)
        ]
    )
