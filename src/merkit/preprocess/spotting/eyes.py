"""Where the eyes are in an aligned face crop, so that spotting can tell a blink from a movement
of the lids (`merkit.preprocess.spotting.blinks`).

dlib's five-point landmarks (two corners per eye and the nose; the `face-recognition-models`
wheel's 9 MB model, a tenth of the 68-point one's loading time) on the face dlib's detector finds
in the crop, padded first because the detector misses a face that fills the whole image (padded,
it finds 353 of the 380 real tight apex crops of MEGC2019's development set at 128 px). Where the
detector finds nothing -- drawn faces, unusual crops -- the crop itself is taken as the face box
(it is an aligned face), which places the eyes within about 2 px of the truth on drawn faces. A
pair that is not level, apart and in the upper face as two eyes are is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from merkit.preprocess.face import frontal_face_detector, landmark_model_path

LANDMARKS = "landmarks"  # on the face the detector found
CROP_LANDMARKS = "crop-landmarks"  # on the crop taken as the face box
FIVE_POINT_MODEL = "shape_predictor_5_face_landmarks.dat"
# The face box within an aligned crop where no face is detected (fractions of its side).
CROP_BOX = (0.05, 0.1, 0.95, 1.0)
MIN_EYE_CONTRAST = 20  # grey levels between the darkest and brightest pixel of an eye region
# The eye region (the opening, both lids and the crease), in eye widths (corner to corner).
REGION_HALF_WIDTH = 0.75
REGION_HALF_HEIGHT = 0.45


@dataclass(frozen=True)
class Eyes:
    """Both eyes of a face crop: centres (x, y) and widths in crop pixels, how they were found."""

    centres: np.ndarray  # (2, 2): the eye on the image's left first
    widths: np.ndarray  # (2,)
    source: str  # LANDMARKS or CROP_LANDMARKS
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


@cache
def _five_points():  # dlib has no type hints
    import dlib

    return dlib.shape_predictor(str(landmark_model_path().with_name(FIVE_POINT_MODEL)))


def _eyes_in_box(padded: np.ndarray, box: tuple[int, int, int, int], pad: int) -> np.ndarray:
    """(2, 2, 2): the corners of each eye (image-left eye first) on the face in `box`."""
    import dlib

    shape = _five_points()(padded, dlib.rectangle(*box))
    points = np.array([(p.x, p.y) for p in shape.parts()], np.float64) - pad
    pairs = np.stack([points[2:4], points[0:2]])  # the model's points 0-1 and 2-3: one eye each
    return pairs[np.argsort(pairs[:, :, 0].mean(axis=1))]


def _plausible(centres: np.ndarray, side: int) -> bool:
    """Two eyes of an upright face crop: level, 12-70 % of the crop apart, in its upper 65 %."""
    dx, dy = centres[1] - centres[0]
    level, upper = abs(dy) < 0.2 * dx, centres[:, 1].max() < 0.65 * side
    return 0.12 * side < dx < 0.7 * side and level and upper


def find_eyes(face: np.ndarray) -> Eyes | None:
    """The eyes of a grayscale uint8 face crop, or None where no plausible pair is found."""
    side = face.shape[1]
    pad = side // 2
    padded = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    detector = frontal_face_detector()
    found = detector(padded, 0) or detector(padded, 1)  # upsampled: a face smaller than 80 px
    if found:
        best = max(found, key=lambda r: r.area())
        boxes = [((best.left(), best.top(), best.right(), best.bottom()), LANDMARKS)]
    else:
        boxes = []
    height = face.shape[0]
    x0, y0, x1, y1 = CROP_BOX
    crop_box = (pad + round(x0 * side), pad + round(y0 * height))
    crop_box += (pad + round(x1 * side), pad + round(y1 * height))
    boxes.append((crop_box, CROP_LANDMARKS))
    for box, source in boxes:
        corners = _eyes_in_box(padded, box, pad)
        centres = corners.mean(axis=1)
        widths = np.hypot(*(corners[:, 1] - corners[:, 0]).T)
        eyes = Eyes(centres, widths, source, side)
        if _plausible(centres, side) and _contrasted(face, eyes):
            return eyes
    return None


def _contrasted(face: np.ndarray, eyes: Eyes) -> bool:
    """Both regions hold an eye's contrast (iris, lids), not flat skin or an empty image."""
    return all(np.ptp(face[mask]) >= MIN_EYE_CONTRAST for mask in eyes.masks(face.shape))
