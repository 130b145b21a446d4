"""Face detection, 68 landmarks and one similarity alignment per clip.

Detection uses dlib's frontal HOG detector (OpenCV's Haar cascade as fallback) and the 68-point
shape predictor shipped in the `face-recognition-models` wheel, so nothing downloads at run time.
The alignment is computed once, on the onset frame, and applied to every frame of the clip:
re-aligning each frame would turn landmark jitter into fake motion, which at micro-expression
amplitudes (a pixel or two) swamps the real signal.

A face that fills the frame (a close-up) has no room for the crop's margin: where the frame
shows less than FILL_COVERAGE of the crop, the crop is cut to the part the frame shows (spotting
measures blocks of the crop; a crop two thirds empty leaves the face a third of them). Where no
face is found at all but the frame, squashed to the crop, holds a pair of eyes (a face too close
for the face detectors), the whole frame is the crop. `Alignment.face` says which (`CROPS`).
"""

from __future__ import annotations

import importlib.util
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from merkit.data.sample import Sample
from merkit.errors import DataLayoutError
from merkit.io import user_cache_dir

CORNER_MODEL = "shape_predictor_5_face_landmarks.dat"
LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
DETECTOR_CACHE = "dlib_frontal_face_detector.svm"
# Face geometry in inter-ocular distances (IOD), measured on dlib's 68 landmarks of a frontal
# face: jaw corners ~1.1 IOD left/right of the eye midpoint, chin ~1.75 below, brows ~0.4 above.
# The unpadded face box is a square of FACE_BOX_IOD whose centre lies EYE_TO_CENTRE_IOD below
# the eye line; `margin` pads it on every side by that fraction of its side.
FACE_BOX_IOD = 2.4
EYE_TO_CENTRE_IOD = 0.6
# Detection runs on a copy whose longer side is at most this (SAMM frames are 2040x1088).
DETECT_MAX_SIDE = 640
FILL_PAD = 0.25  # border added around a frame whose face fills it, as a share of its longer side
FILL_COVERAGE = 0.9  # a crop the frame shows less of than this is cut to what it shows
MAX_STRETCH = 1.5  # a crop cut to the frame is stretched along one side at most this much more
# A frame no face detector finds a face in is searched for eyes squashed to the crop's side and
# to this one: the eyes of a face that fills it are then 30-40 px wide, well above the eye
# cascade's 20 px window.
EYE_CHECK_SIDE = 192
HAAR_BOX_PER_EYE = 1.3  # a Haar eye box is this many eye widths wide (1.27 on real faces)
CROPPED_PREFIXES = ("reg_img", "reg_image")
# How a clip's face crop was placed (`Alignment.face`).
LANDMARKS = "landmarks"  # on the face's landmarks
CUT_TO_FRAME = "cut-to-frame"  # on its landmarks, cut to the part of the crop the frame shows
WHOLE_FRAME = "whole-frame"  # no face found, but the whole frame shows a pair of eyes
GIVEN = "given"  # the frames are face crops already (`aligned`, a cropped release)
CROPS = (LANDMARKS, CUT_TO_FRAME, WHOLE_FRAME, GIVEN)


def landmark_model_path(name: str = LANDMARK_MODEL) -> Path:
    """A .dat of `face-recognition-models` (the 68-landmark model unless `name` says another),
    found without importing the package.

    (Its `__init__` imports `pkg_resources`, which recent setuptools no longer ships.)
    """
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "models" / name
        if path.is_file():
            return path
    raise DataLayoutError(f"{name} not found; install the pinned `face-recognition-models` package")


@cache
def frontal_face_detector():  # dlib has no type hints
    """dlib's frontal face detector, read from merkit's cache (a millisecond) once it has been
    built (half a second: dlib builds it from text) and saved there by a first call."""
    import dlib

    cached = user_cache_dir() / DETECTOR_CACHE
    if cached.is_file():
        try:
            return dlib.fhog_object_detector(str(cached))
        except RuntimeError:  # a damaged cache is rebuilt below
            pass
    detector = dlib.get_frontal_face_detector()
    _save_detector(detector, cached)
    return detector


def _save_detector(detector, path: Path) -> None:  # dlib has no type hints
    """Save atomically; where the cache cannot be written, the next process builds it again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError:
        return
    os.close(fd)
    try:
        detector.save(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError):
        Path(tmp).unlink(missing_ok=True)


@cache
def _dlib_predictor():
    import dlib

    return dlib.shape_predictor(str(landmark_model_path()))


@cache
def _corner_predictor():
    import dlib

    return dlib.shape_predictor(str(landmark_model_path(CORNER_MODEL)))


@cache
def _haar_cascade() -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(
        str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
    )


Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels


def _largest(boxes: list[Box]) -> Box | None:
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), default=None)


def _dlib_boxes(gray: np.ndarray) -> list[Box]:
    return [(r.left(), r.top(), r.right(), r.bottom()) for r in frontal_face_detector()(gray, 1)]


def _haar_boxes(gray: np.ndarray) -> list[Box]:
    found = _haar_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
    return [(x, y, x + w, y + h) for x, y, w, h in found]


def _detect(gray: np.ndarray, finder: Callable[[np.ndarray], list[Box]]) -> Box | None:
    """The largest face `finder` finds, in the image's own pixels."""
    scale = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    box = _largest(finder(small))
    if box is None:
        return None
    return tuple(round(v / scale) for v in box)  # type: ignore[return-value]


def detect_face(gray: np.ndarray) -> Box | None:
    """The largest face of a grayscale uint8 image, or None; dlib first, Haar as fallback.

    A face that fills the frame (a close-up, an upscaled crop) leaves the detectors no margin
    around it, and both miss it: each searches the frame again with a border of FILL_PAD of its
    longer side added on every side (continuing its edge), and the box is moved back. dlib
    searches both before the Haar cascade does: the cascade's false alarms (an eye or a nostril
    of a face that fills the frame, taken for a small face) must not win over the face.
    """
    pad = round(FILL_PAD * max(gray.shape))
    for finder in (_dlib_boxes, _haar_boxes):
        box = _detect(gray, finder)
        if box is not None:
            return box
        padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        box = _detect(padded, finder)
        if box is not None:
            return tuple(v - pad for v in box)  # type: ignore[return-value]
    return None


def face_in_crop(face: np.ndarray) -> Box | None:
    """The largest face dlib finds in a face crop, in the crop's pixels. A face that fills the
    crop has no margin for the detector: it is searched with half the crop's side added on
    every side. One smaller than the detector's 80 px window is searched again at twice the
    size, with only an eighth added (the crop around a small face is its margin; a quarter of
    the pixels of a wide border at twice the size: 10 ms instead of 24 for a 128 px crop)."""
    detector = frontal_face_detector()
    for share, upsample in ((0.5, 0), (0.125, 1)):
        pad = round(face.shape[1] * share)
        padded = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        found = detector(padded, upsample)
        box = _largest([(r.left(), r.top(), r.right(), r.bottom()) for r in found])
        if box is not None:
            return tuple(v - pad for v in box)  # type: ignore[return-value]
    return None


@cache
def _eye_cascade() -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_eye.xml"))


def plausible_eyes(centres: np.ndarray, widths: np.ndarray, side: int) -> bool:
    """Two eyes of an upright face crop: level, 20-70 % of the crop apart and more than an eye
    width (the nose's bridge lies between them), in its upper 55 % (nostrils, which an eye
    cascade may take for a pair, lie lower and closer together)."""
    dx, dy = centres[1] - centres[0]
    level, upper = abs(dy) < 0.2 * dx, centres[:, 1].max() < 0.55 * side
    apart = 0.2 * side < dx < 0.7 * side and dx > 1.2 * widths.mean()
    return apart and level and upper


def eye_pair(face: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Centres (2, 2), the eye on the image's left first, and widths (2,) of the pair of OpenCV
    Haar eye boxes in a face crop that lies level, apart and in the upper face as two eyes do,
    and are alike (an eye and a brow are not); None where no pair does."""
    side = face.shape[1]
    boxes = _eye_cascade().detectMultiScale(face, 1.1, 3, minSize=(side // 16, side // 16))
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for i, first in enumerate(boxes):
        for second in boxes[i + 1 :]:
            pair = sorted([first, second], key=lambda b: b[0])
            centres = np.array([b[:2] + b[2:] / 2 for b in pair], np.float64)
            widths = np.array([b[2] for b in pair], np.float64) / HAAR_BOX_PER_EYE
            if not plausible_eyes(centres, widths, side) or widths.max() > 1.3 * widths.min():
                continue
            mismatch = abs(widths[0] - widths[1]) + abs(centres[1, 1] - centres[0, 1])
            if best is None or mismatch < best[0]:
                best = (mismatch, centres, widths)
    return None if best is None else best[1:]


def _shape(gray: np.ndarray, box: Box, predictor) -> np.ndarray:
    """The points (x, y) `predictor` places in `box`, float64 (n, 2). A box that reaches beyond
    the image (a face that fills the frame, found on a padded copy) is read on an image padded
    as far, its edge continued: a shape model needs the whole face box."""
    import dlib

    height, width = gray.shape[:2]
    pad = max(0, -box[0], -box[1], box[2] - width + 1, box[3] - height + 1)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    left, top, right, bottom = (v + pad for v in box)
    shape = predictor(gray, dlib.rectangle(left, top, right, bottom))
    return np.array([(p.x - pad, p.y - pad) for p in shape.parts()], dtype=np.float64)


def eye_corners(gray: np.ndarray, box: Box) -> np.ndarray:
    """(2, 2, 2) the corners (x, y) of both eyes of the face in `box`, the eye on the image's
    left first, each eye's corners left to right: dlib's 5-point model (eye corners and nose;
    9 MB, read in 50 ms, where the 68-point model takes half a second)."""
    eyes = _shape(gray, box, _corner_predictor())[:4].reshape(2, 2, 2)
    eyes = np.stack([eye[np.argsort(eye[:, 0])] for eye in eyes])
    return eyes[np.argsort(eyes[:, :, 0].mean(axis=1))]


def face_landmarks(gray: np.ndarray, box: Box) -> np.ndarray:
    """The 68 dlib landmarks (x, y) of the face in `box`, as float64 (68, 2) (see `_shape`)."""
    return _shape(gray, box, _dlib_predictor())


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the eye on the image's left (points 36-41) and right (42-47)."""
    return landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)


@dataclass(frozen=True)
class Alignment:
    """A 2x3 affine map from frame pixels to a `size` x `size` face crop."""

    matrix: np.ndarray
    size: int
    face: str = LANDMARKS  # how the crop was placed (`CROPS`)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Warp one frame (H, W[, C]) into the face crop (size, size[, C])."""
        return cv2.warpAffine(
            frame,
            self.matrix,
            (self.size, self.size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def apply_all(self, frames: np.ndarray) -> np.ndarray:
        """Warp a stack (T, H, W[, C]) with the same map."""
        return np.stack([self.apply(f) for f in frames])

    def apply_averaged(self, frame: np.ndarray) -> np.ndarray:
        """`apply`, but where the crop is much smaller than the face in the frame, the part of
        the frame the crop covers is first halved (Gaussian pyramid) until it is not: a warp
        samples a few pixels per crop pixel, so fine texture (skin, an upscaled frame's
        interpolation) would alias into patterns that shift as the head moves, which spotting
        would read as movement."""
        scale = float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))
        if scale >= 0.6:
            return self.apply(frame)
        corners = np.array([[0, 0], [self.size, 0], [0, self.size], [self.size, self.size]])
        inverse = cv2.invertAffineTransform(self.matrix)
        points = corners @ inverse[:, :2].T + inverse[:, 2]
        height, width = frame.shape[:2]
        low = np.clip(np.floor(points.min(axis=0) - 4 / scale), 0, [width - 1, height - 1])
        high = np.clip(np.ceil(points.max(axis=0) + 4 / scale), low + 1, [width, height])
        (x0, y0), (x1, y1) = low.astype(int), high.astype(int)
        part = frame[y0:y1, x0:x1]
        matrix = self.matrix.copy()
        matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], np.float64)  # the part's origin
        while scale < 0.6:  # pyrDown keeps every other pixel: x = 2 x_small
            part = cv2.pyrDown(part)
            matrix[:, :2] *= 2.0
            scale *= 2.0
        return Alignment(matrix, self.size).apply(part)

    def coverage(self, shape: tuple[int, ...]) -> np.ndarray:
        """(size, size) bool: the crop pixels that show the frame (of `shape`), not what a warp
        invents beyond its edge (a face that fills the frame leaves the crop's margin there)."""
        inverse = cv2.invertAffineTransform(self.matrix)
        ys, xs = np.mgrid[0 : self.size, 0 : self.size].astype(np.float64)
        x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
        y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
        height, width = shape[:2]
        return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)

    def resized(self, size: int) -> Alignment:
        """The same crop rendered at `size` x `size` pixels."""
        ratio = size / self.size
        matrix = self.matrix * ratio
        matrix[:, 2] += 0.5 * ratio - 0.5  # keep pixel centres on pixel centres
        return Alignment(matrix, size, self.face)

    def cut_to_frame(self, shape: tuple[int, ...]) -> Alignment:
        """This crop, or where a frame of `shape` shows less than FILL_COVERAGE of it, the
        part of it the frame shows, stretched to fill it (one side at most MAX_STRETCH times
        more than the other: a sliver of a face is widened rather than stretched further)."""
        seen = self.coverage(shape)
        if seen.mean() >= FILL_COVERAGE or not seen.any():
            return self
        ys, xs = np.nonzero(seen)
        low = np.array([xs.min(), ys.min()], np.float64)
        span = np.array([xs.max(), ys.max()], np.float64) + 1 - low
        wanted = np.maximum(span, span.max() / MAX_STRETCH)
        centre = np.clip(low + span / 2, wanted / 2, self.size - wanted / 2)
        scale = self.size / wanted
        matrix = self.matrix * scale[:, None]
        matrix[:, 2] -= (centre - wanted / 2) * scale
        return Alignment(matrix, self.size, CUT_TO_FRAME)


def alignment_from_landmarks(landmarks: np.ndarray, size: int, margin: float) -> Alignment:
    """Similarity transform: eyes level, fixed inter-ocular distance, face box centred."""
    left, right = eye_centres(landmarks)
    dx, dy = right - left
    angle = math.degrees(math.atan2(dy, dx))
    target_iod = size / (FACE_BOX_IOD * (1 + 2 * margin))
    scale = target_iod / math.hypot(dx, dy)
    mid = (left + right) / 2
    matrix = cv2.getRotationMatrix2D((float(mid[0]), float(mid[1])), angle, scale)
    target = np.array([size / 2, size / 2 - EYE_TO_CENTRE_IOD * target_iod])
    matrix[:, 2] += target - mid
    return Alignment(matrix, size)


def resize_alignment(shape: tuple[int, ...], size: int, face: str = GIVEN) -> Alignment:
    """The map that only resizes a whole (already cropped and aligned) frame to `size`."""
    height, width = shape[:2]
    matrix = np.array([[size / width, 0.0, 0.0], [0.0, size / height, 0.0]])
    # Pixel centres: x_out + 0.5 = (x_in + 0.5) * s.
    matrix[:, 2] = [0.5 * size / width - 0.5, 0.5 * size / height - 0.5]
    return Alignment(matrix, size, face)


def estimate_alignment(
    gray: np.ndarray, size: int, margin: float, aligned: bool = False, source: str = ""
) -> Alignment:
    """The clip's alignment from its onset frame (grayscale uint8).

    `aligned=True` (cropped releases) skips detection and only resizes. A face that fills the
    frame is cut to it, or taken as the whole frame (see the module). No face raises a
    DataLayoutError naming `source`.
    """
    if aligned:
        return resize_alignment(gray.shape, size)
    box = detect_face(gray)
    if box is not None:
        found = alignment_from_landmarks(face_landmarks(gray, box), size, margin)
        return found.cut_to_frame(gray.shape)
    whole = resize_alignment(gray.shape, size, WHOLE_FRAME)
    for side in (size, EYE_CHECK_SIDE):
        crop = whole.resized(side).apply_averaged(gray)
        if eye_pair(crop) is not None or face_in_crop(crop) is not None:
            return whole
    raise DataLayoutError(
        f"{source or 'frame'}: no face found in the onset frame "
        "(expected one frontal face; use aligned=True for cropped faces)"
    )


def is_cropped_release(sample: Sample) -> bool:
    """Whether the sample's frames come from a cropped release (`reg_img*.jpg` files)."""
    names = [p.name.lower() for p in sample.frames[:1]]
    return bool(names) and names[0].startswith(CROPPED_PREFIXES)
