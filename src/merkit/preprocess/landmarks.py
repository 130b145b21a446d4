"""Five facial points (eyes, nose tip, mouth corners) on a face image, with merkit's face stage.

The apex faces published with HTNet are tight 224x224 crops: the face fills the frame, and a
detector trained on faces in a scene (dlib's HOG) misses some of them. Measured on the 380
development apex faces (benchmarks/apex_landmarks.py; agreement = mean distance of the five
points from those the shape predictor gives with the whole image as the face box, in
inter-ocular distances): merkit's `detect_face` (dlib, Haar as fallback) on the image as is
finds 353, all within 0.1; on the image enlarged 2x (`upsample`) it finds 360, all within 0.1;
framing the image with a flat border of 15 % of its side finds 379 but puts 19 of them more than
0.1 off (boxes far larger than the face, mouth corners on the chin). So the image is enlarged,
not framed. For the faces still missed, the whole image is the face box given to the shape
predictor (`whole_image`): where a face is detected, those points lie 0.009 inter-ocular
distances from the detected box's on average, so a tight crop is a good face box. Points whose
geometry is not an upright frontal face's (eyes not above the nose, nose not above the mouth,
eyes too close or too far apart) are refused, and the caller falls back to HTNet's fixed points.
(HTNet itself runs MTCNN on the face shrunk to 28x28; merkit looks at the full image.)

The five points are dlib's 68-point landmarks: eye centres = mean of points 36-41 (image left)
and 42-47 (image right), nose tip = 30, mouth corners = 48 (image left) and 54 (image right),
in HTNet's (MTCNN's) order. Points are cached per image (keyed by the file and `PointsConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from merkit.errors import DataLayoutError
from merkit.preprocess.cache import ArrayCache, file_key
from merkit.preprocess.face import detect_face, eye_centres, face_landmarks
from merkit.preprocess.regions import rescale_points

DETECTED, FACE_BOX, FALLBACK = "detected", "face-box", "fallback"
POINT_SOURCES = (DETECTED, FACE_BOX, FALLBACK)
# Inter-ocular distance of a plausible face, as a fraction of the image width.
IOD_RANGE = (0.15, 0.8)


@dataclass(frozen=True)
class PointsConfig:
    """How the points of a face image are found; part of the points' cache key."""

    upsample: float = 2.0  # image enlarged by this factor before detection
    border: float = 0.0  # flat border added on every side before detection (fraction of side)
    whole_image: bool = True  # no face detected: the whole image is the shape predictor's box


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """The five points (5, 2) of dlib's 68 landmarks, in HTNet's order."""
    left, right = eye_centres(landmarks)
    return np.stack([left, right, landmarks[30], landmarks[48], landmarks[54]])


def plausible(points: np.ndarray, width: int) -> bool:
    """Whether five points look like an upright frontal face of an image `width` wide."""
    eyes, nose, mouth = points[:2], points[2], points[3:]
    iod = float(np.hypot(*(eyes[1] - eyes[0])))
    return bool(
        eyes[0, 0] < eyes[1, 0]
        and mouth[0, 0] < mouth[1, 0]
        and eyes[:, 1].max() < nose[1] < mouth[:, 1].min()
        and IOD_RANGE[0] * width <= iod <= IOD_RANGE[1] * width
    )


def detected_points(gray: np.ndarray, config: PointsConfig) -> np.ndarray | None:
    """Five points from merkit's detector on the enlarged, framed image, in `gray`'s pixels."""
    image = gray
    if config.upsample != 1.0:
        image = cv2.resize(gray, None, fx=config.upsample, fy=config.upsample)
    pad = round(config.border * max(image.shape))
    if pad:
        fill = int(np.median(image))
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill)
    box = detect_face(image)
    if box is None:
        return None
    points = five_points(face_landmarks(image, box)) - pad
    return rescale_points(points, config.upsample, 1.0)


def whole_image_points(gray: np.ndarray) -> np.ndarray:
    """Five points from the shape predictor given the whole image as the face box."""
    height, width = gray.shape
    return five_points(face_landmarks(gray, (0, 0, width - 1, height - 1)))


def find_points(
    gray: np.ndarray, config: PointsConfig = PointsConfig()
) -> tuple[np.ndarray | None, str]:
    """The five points (x, y) in `gray`'s pixels and how they were found (`DETECTED` or
    `FACE_BOX`); `(None, FALLBACK)` when neither gives a plausible face."""
    width = gray.shape[1]
    points = detected_points(gray, config)
    if points is not None and plausible(points, width):
        return points, DETECTED
    if config.whole_image:
        points = whole_image_points(gray)
        if plausible(points, width):
            return points, FACE_BOX
    return None, FALLBACK


def read_gray(path: Path) -> np.ndarray:
    """A face image as 8-bit grey; DataLayoutError naming the file if it does not decode."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataLayoutError(f"{path}: cannot decode the face image (expected a JPEG or PNG)")
    return image


def image_points(
    path: Path, config: PointsConfig = PointsConfig(), cache_dir: Path | None = None
) -> tuple[np.ndarray | None, str, tuple[int, int]]:
    """`find_points` on the image file at `path`, and the image's (width, height); read from /
    written to the points cache in `cache_dir` when one is given."""
    cache = ArrayCache(cache_dir) if cache_dir is not None else None
    key = file_key(path, config, "five-points")
    entry = cache.load(key) if cache is not None else None
    if entry is not None:
        points = entry.x if entry.meta["source"] != FALLBACK else None
        return points, entry.meta["source"], tuple(entry.meta["image_size"])
    gray = read_gray(path)
    points, source = find_points(gray, config)
    image_size = (gray.shape[1], gray.shape[0])
    if cache is not None:
        stored = points if points is not None else np.zeros((0, 2))
        cache.save(key, stored, {"source": source, "image_size": list(image_size)})
    return points, source, image_size
