"""Where the eyes are in an aligned face crop, so that spotting can tell a blink from a movement
of the lids (`merkit.preprocess.spotting.blinks`). Found in a few tens of milliseconds, with no
model to load beyond OpenCV's eye cascade and dlib's face detector (read from merkit's cache):
spotting runs on every clip `merkit predict` sees, and one clip must not pay a landmark model's
second of loading.

- OpenCV's Haar eye cascade, keeping the pair of boxes that lies level, apart and in the upper
  face as two eyes do: where it finds a pair, its eyes are within about 2 px of the truth on
  drawn faces (59 of 60 found with the next finder).
- Else dlib's face detector on the crop (padded: it misses a face that fills the whole image),
  the eyes placed where dlib's 68 landmarks put them in its boxes: centres at 24 % and 76 % of
  the box's width and 28 % of it down, each 20.5 % of it wide (means over the 353 of MEGC2019's
  380 real apex crops it finds at 128 px; spread 2-3 % of the box).

- Else they are assumed where a face crop holds them (centres at 26 % and 74 % of the width and
  30 % down, each a fifth of the width wide: between the datasets' tight crops and merkit's
  aligned crops), and said to be: blinks are still told from lid movements there.

A pair that is not level, apart and in the upper face, or whose regions hold no eye's contrast,
is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from merkit.preprocess.face import eye_pair, face_in_crop, plausible_eyes

EYE_DETECTOR = "eye-detector"
FACE_BOX = "face-box"
ASSUMED = "assumed"
# Where a face crop holds the eyes when no finder sees them, in crop widths.
CROP_EYES_X = (0.26, 0.74)
CROP_EYES_Y = 0.30
CROP_EYE_WIDTH = 0.2
# Where dlib's boxes hold the eyes (see the module docstring), in box widths from its top left.
BOX_EYES_X = (0.239, 0.762)
BOX_EYES_Y = 0.277
BOX_EYE_WIDTH = 0.205
MIN_EYE_CONTRAST = 20  # grey levels between the darkest and brightest pixel of an eye region
# The eye region (the opening, both lids and the crease), in eye widths (corner to corner).
REGION_HALF_WIDTH = 0.75
REGION_HALF_HEIGHT = 0.45


@dataclass(frozen=True)
class Eyes:
    """Both eyes of a face crop: centres (x, y) and widths in crop pixels, how they were found."""

    centres: np.ndarray  # (2, 2): the eye on the image's left first
    widths: np.ndarray  # (2,)
    source: str  # EYE_DETECTOR, FACE_BOX or ASSUMED
    side: int  # the crop's width in pixels, which the coordinates refer to

    def masks(self, shape: tuple[int, int], grow: float = 1.0) -> np.ndarray:
        """(2, h, w) bool: each eye's region on the crop resized to `shape`, `grow` times as
        large."""
        height, width = shape
        scale = np.array([width, height], np.float64) / self.side
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        out = np.zeros((2, *shape), bool)
        for i, (centre, eye_width) in enumerate(zip(self.centres, self.widths, strict=True)):
            cx, cy = (centre + 0.5) * scale - 0.5
            ax = max(grow * REGION_HALF_WIDTH * eye_width * scale[0], 1.0)
            ay = max(grow * REGION_HALF_HEIGHT * eye_width * scale[1], 1.0)
            out[i] = ((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2 <= 1.0
        return out


def _from_eye_detector(face: np.ndarray) -> Eyes | None:
    pair = eye_pair(face)
    return None if pair is None else Eyes(*pair, EYE_DETECTOR, face.shape[1])


def _from_face_box(face: np.ndarray) -> Eyes | None:
    box = face_in_crop(face)
    if box is None:
        return None
    left, top, width = box[0], box[1], box[2] - box[0]
    centres = np.array([[left + x * width, top + BOX_EYES_Y * width] for x in BOX_EYES_X])
    return Eyes(centres, np.full(2, BOX_EYE_WIDTH * width), FACE_BOX, face.shape[1])


def find_eyes(face: np.ndarray) -> Eyes | None:
    """The eyes of a grayscale uint8 face crop, or None where no plausible pair is found."""
    for finder in (_from_eye_detector, _from_face_box, _assumed):
        eyes = finder(face)
        if (
            eyes is not None
            and plausible_eyes(eyes.centres, eyes.widths, eyes.side)
            and _contrasted(face, eyes)
        ):
            return eyes
    return None


def _assumed(face: np.ndarray) -> Eyes:
    side = face.shape[1]
    centres = np.array([[x * side, CROP_EYES_Y * face.shape[0]] for x in CROP_EYES_X])
    return Eyes(centres, np.full(2, CROP_EYE_WIDTH * side), ASSUMED, side)


def _contrasted(face: np.ndarray, eyes: Eyes) -> bool:
    """Both regions hold an eye's contrast (iris, lids), not flat skin or an empty image."""
    return all(np.ptp(face[mask]) >= MIN_EYE_CONTRAST for mask in eyes.masks(face.shape))
