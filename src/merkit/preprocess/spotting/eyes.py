"""Where the eyes are in an aligned face crop, so that spotting can tell a blink from a movement
of the lids (`merkit.preprocess.spotting.blinks`). Found in a few tens of milliseconds, with no
model to load beyond OpenCV's eye cascade, dlib's face detector (read from merkit's cache) and
dlib's 9 MB 5-point model: spotting runs on every clip `merkit predict` sees, and one clip must
not pay the 68-point model's half second of loading.

- dlib's face detector on the crop (padded: it misses a face that fills the whole image), then
  the eye corners of dlib's 5-point model in its box (50 ms to read, once): on 92 of MEGC2019's
  real apex crops at 128 px, centres within 1.7 px of the 68-point model's eyes (90th
  percentile) and widths 1 px narrower. A fixed place in the face box, as before, put the eyes
  of a photo tilted in its box a lid's height off, and its blinks were then missed.
- Else OpenCV's Haar eye cascade, keeping the pair of boxes that lies level, apart and in the
  upper face as two eyes do: where it finds a pair, its eyes are within about 2 px of the truth
  on drawn faces.

- Else they are assumed where a face crop holds them (centres at 26 % and 74 % of the width and
  30 % down, each a fifth of the width wide: between the datasets' tight crops and merkit's
  aligned crops), and said to be: blinks are still told from lid movements there.

A pair that is not level, apart and in the upper face, or whose regions hold no eye's contrast,
is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from merkit.preprocess.face import eye_corners, eye_pair, face_in_crop, plausible_eyes

LANDMARKS = "landmarks"
EYE_DETECTOR = "eye-detector"
ASSUMED = "assumed"
# Where a face crop holds the eyes when no finder sees them, in crop widths.
CROP_EYES_X = (0.26, 0.74)
CROP_EYES_Y = 0.30
CROP_EYE_WIDTH = 0.2
MIN_EYE_CONTRAST = 20  # grey levels between the darkest and brightest pixel of an eye region
# The eye region (the opening, both lids and the crease), in eye widths (corner to corner).
REGION_HALF_WIDTH = 0.75
REGION_HALF_HEIGHT = 0.45


@dataclass(frozen=True)
class Eyes:
    """Both eyes of a face crop: centres (x, y) and widths in crop pixels, how they were found."""

    centres: np.ndarray  # (2, 2): the eye on the image's left first
    widths: np.ndarray  # (2,)
    source: str  # LANDMARKS, EYE_DETECTOR or ASSUMED
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


def _from_landmarks(face: np.ndarray) -> Eyes | None:
    box = face_in_crop(face)
    if box is None:
        return None
    corners = eye_corners(face, box)
    centres, widths = corners.mean(axis=1), np.linalg.norm(corners[:, 1] - corners[:, 0], axis=1)
    # As two eyes lie in a face's box (a small face in a loose crop has them close together).
    if not plausible_eyes(centres - box[:2], widths, box[2] - box[0]):
        return None
    return Eyes(centres, widths, LANDMARKS, face.shape[1])


def find_eyes(face: np.ndarray) -> Eyes | None:
    """The eyes of a grayscale uint8 face crop, or None where no plausible pair is found."""
    for finder in (_from_landmarks, _from_eye_detector, _assumed):
        eyes = finder(face)
        if eyes is not None and _contrasted(face, eyes):  # each finder checks its pair's geometry
            return eyes
    return None


def _assumed(face: np.ndarray) -> Eyes:
    side = face.shape[1]
    centres = np.array([[x * side, CROP_EYES_Y * face.shape[0]] for x in CROP_EYES_X])
    return Eyes(centres, np.full(2, CROP_EYE_WIDTH * side), ASSUMED, side)


def _contrasted(face: np.ndarray, eyes: Eyes) -> bool:
    """Both regions hold an eye's contrast (iris, lids), not flat skin or an empty image."""
    return all(np.ptp(face[mask]) >= MIN_EYE_CONTRAST for mask in eyes.masks(face.shape))
