"""Where the eyes are in an aligned face crop, so that apex spotting can leave blinks out.

A blink sweeps the upper lid over the eye by several pixels, more than a micro-expression moves any
part of the face, so a motion measure over the whole face peaks at the blink. Spotting work on
long videos therefore masks the eye openings found by facial landmarks (as in the MEGC spotting
baselines). Two finders, tried in this order on a grayscale crop:

- dlib's 68 landmarks (the model merkit aligns faces with): reliable on real faces. The crop is
  padded first, because the face detector misses a face that fills the whole image (padded, it
  finds 353 of the 380 real tight apex crops of ../shared/data/megc2019 at 128 px).
- OpenCV's Haar eye cascade, keeping the pair of boxes that lies level, apart and in the upper face
  as two eyes do: it finds the eyes of faces the landmark model was not trained on (of 40 drawn
  synthetic faces dlib finds 22, the cascade 17 of the other 18).

The masked region is an ellipse per eye, 1.5 eye widths across and 0.9 eye widths high: the lid
travel of a blink and the lid crease above it, but not the brows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from merkit.preprocess.face import face_landmarks

LANDMARKS = "landmarks"
EYE_DETECTOR = "eye-detector"
# Half-axes of the masked ellipse, in eye widths (corner to corner).
MASK_HALF_WIDTH = 0.75
MASK_HALF_HEIGHT = 0.45
# A Haar eye box is about this many eye widths wide (measured on the synthetic faces: 1.70).
HAAR_BOX_PER_EYE = 1.7


@dataclass(frozen=True)
class Eyes:
    """Both eyes of a face crop: centres (x, y) and widths in crop pixels, how they were found."""

    centres: np.ndarray  # (2, 2): the eye on the image's left first
    widths: np.ndarray  # (2,)
    source: str  # LANDMARKS or EYE_DETECTOR
    side: int  # the crop's width in pixels, which the coordinates refer to

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean (h, w) mask of the eye regions on the crop resized to `shape`."""
        height, width = shape
        scale = np.array([width, height], np.float64) / self.side
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        out = np.zeros(shape, bool)
        for centre, eye_width in zip(self.centres, self.widths, strict=True):
            cx, cy = (centre + 0.5) * scale - 0.5
            ax = max(MASK_HALF_WIDTH * eye_width * scale[0], 1.0)
            ay = max(MASK_HALF_HEIGHT * eye_width * scale[1], 1.0)
            out |= ((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2 <= 1.0
        return out


@cache
def _face_detector():  # dlib has no type hints
    import dlib

    return dlib.get_frontal_face_detector()


def _from_landmarks(face: np.ndarray) -> Eyes | None:
    pad = face.shape[1] // 2
    padded = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    found = _face_detector()(padded, 0)  # no upsampling: the face fills half the padded image
    if not found:
        return None
    box = max(found, key=lambda r: r.area())
    points = face_landmarks(padded, (box.left(), box.top(), box.right(), box.bottom())) - pad
    eyes = [points[36:42], points[42:48]]  # the image's left eye, then its right
    centres = np.array([e.mean(axis=0) for e in eyes])
    widths = np.array([np.hypot(*(e[3] - e[0])) for e in eyes])
    if not _plausible(centres, face.shape[1]):
        return None
    return Eyes(centres, widths, LANDMARKS, face.shape[1])


@cache
def _eye_cascade() -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_eye.xml"))


def _from_eye_detector(face: np.ndarray) -> Eyes | None:
    side = face.shape[1]
    boxes = _eye_cascade().detectMultiScale(face, 1.1, 3, minSize=(side // 16, side // 16))
    best: tuple[float, Eyes] | None = None
    for i, first in enumerate(boxes):
        for second in boxes[i + 1 :]:
            pair = sorted([first, second], key=lambda b: b[0])
            centres = np.array([b[:2] + b[2:] / 2 for b in pair], np.float64)
            if not _plausible(centres, side):
                continue
            widths = np.array([b[2] for b in pair], np.float64) / HAAR_BOX_PER_EYE
            mismatch = abs(widths[0] - widths[1]) + abs(centres[1, 1] - centres[0, 1])
            if best is None or mismatch < best[0]:
                best = (mismatch, Eyes(centres, widths, EYE_DETECTOR, side))
    return best[1] if best else None


def _plausible(centres: np.ndarray, side: int) -> bool:
    """Two eyes of an upright face crop: level, 20-70 % of the crop apart, in its upper 65 %."""
    dx, dy = centres[1] - centres[0]
    return 0.2 * side < dx < 0.7 * side and abs(dy) < 0.2 * dx and centres[:, 1].max() < 0.65 * side


def find_eyes(face: np.ndarray) -> Eyes | None:
    """The eyes of a grayscale uint8 face crop, or None where neither finder sees a pair."""
    return _from_landmarks(face) or _from_eye_detector(face)
