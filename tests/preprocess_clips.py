"""Small real-looking face clips for the preprocessing tests, written into tmp_path.

The face is scikit-image's astronaut (a real photograph, shipped in the wheel); the "expression"
is a smooth local warp around the mouth whose amplitude rises to the apex and falls back.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data

from merkit.data.sample import APEX_ANNOTATED, Sample

MOUTH = (228.0, 160.0)  # (x, y) of the astronaut's mouth in the 512x512 image


def face_image(color: bool = False) -> np.ndarray:
    rgb = data.astronaut()
    return rgb if color else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def local_warp(image: np.ndarray, amount: float, centre=MOUTH, radius: float = 18.0) -> np.ndarray:
    """`image` with content near `centre` moved up by `amount` pixels (Gaussian fall-off)."""
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    weight = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * radius**2))
    map_y = (ys + float(amount) * weight).astype(np.float32)
    return cv2.remap(image, xs, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def amplitudes(count: int, apex: int, peak: float) -> list[float]:
    """Triangular motion profile: 0 at the first and last frame, `peak` at index `apex`."""
    rise = np.linspace(0, peak, apex + 1)
    fall = np.linspace(peak, 0, count - apex)[1:]
    return [float(a) for a in np.concatenate([rise, fall])]


def write_frames(folder: Path, frames, numbers, prefix: str = "img", ext: str = ".jpg"):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, frame in zip(numbers, frames, strict=True):
        path = folder / f"{prefix}{number}{ext}"
        cv2.imwrite(str(path), frame[:, :, ::-1] if frame.ndim == 3 else frame)
        paths.append(path)
    return paths


def face_clip(
    folder: Path,
    count: int = 9,
    apex: int = 5,
    peak: float = 3.0,
    first: int = 10,
    apex_source: str = APEX_ANNOTATED,
    color: bool = False,
    prefix: str = "img",
    image: np.ndarray | None = None,
) -> Sample:
    """A clip of `count` frames numbered from `first`, apex at index `apex`, as a Sample."""
    base = face_image(color) if image is None else image
    frames = [local_warp(base, a) for a in amplitudes(count, apex, peak)]
    numbers = list(range(first, first + count))
    paths = write_frames(folder, frames, numbers, prefix)
    return Sample(
        dataset="toy",
        subject="sub01",
        clip=folder.name,
        path=folder,
        emotion="happiness",
        label=0,
        onset=numbers[0],
        apex=numbers[apex] if apex_source == APEX_ANNOTATED else numbers[count // 2],
        offset=numbers[-1],
        apex_source=apex_source,
        frames=tuple(paths),
        frame_numbers=tuple(numbers),
    )
