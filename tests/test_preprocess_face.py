"""Face stage: bundled landmark model, alignment undoes a known roll, errors name the clip."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from merkit.data.sample import Sample
from merkit.errors import DataLayoutError
from merkit.preprocess.face import (
    FACE_BOX_IOD,
    detect_face,
    estimate_alignment,
    eye_centres,
    face_landmarks,
    is_cropped_release,
    landmark_model_path,
)
from preprocess_clips import face_image


def _eye_line(gray: np.ndarray) -> tuple[float, float]:
    """Angle (degrees) and length of the line between the eye centres found by dlib."""
    box = detect_face(gray)
    assert box is not None, "no face found"
    left, right = eye_centres(face_landmarks(gray, box))
    dx, dy = right - left
    return math.degrees(math.atan2(dy, dx)), math.hypot(dx, dy)


def _rotated(gray: np.ndarray, degrees: float) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D((225.0, 130.0), degrees, 1.0)
    return cv2.warpAffine(gray, matrix, gray.shape[::-1], borderMode=cv2.BORDER_REPLICATE)


def test_landmark_model_ships_in_the_installed_wheel() -> None:
    path = landmark_model_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat"
    assert path.stat().st_size > 90_000_000


def test_astronaut_face_is_found_with_68_landmarks() -> None:
    gray = face_image()
    box = detect_face(gray)
    assert box is not None
    left, top, right, bottom = box
    assert 150 < left < right < 300 and 50 < top < bottom < 200
    points = face_landmarks(gray, box)
    assert points.shape == (68, 2)
    assert points[36:48, 1].max() < points[48:68, 1].min()  # eyes above the mouth


@pytest.mark.parametrize("roll", [12.0, -12.0])
def test_alignment_undoes_a_known_rotation(roll: float) -> None:
    size, margin = 160, 0.3
    tilted = _rotated(face_image(), roll)
    before, _ = _eye_line(tilted)
    assert abs(before) > 8  # the input really is tilted
    crop = estimate_alignment(tilted, size, margin).apply(tilted)
    assert crop.shape == (size, size)
    after, distance = _eye_line(crop)
    assert abs(after) < 2.0
    expected = size / (FACE_BOX_IOD * (1 + 2 * margin))
    assert distance == pytest.approx(expected, rel=0.05)


def test_aligned_frames_are_only_resized() -> None:
    flat = np.zeros((340, 280), np.uint8)  # no face at all: detection must not run
    flat[:170] = 200
    alignment = estimate_alignment(flat, 64, 0.1, aligned=True)
    crop = alignment.apply(flat)
    assert crop.shape == (64, 64)
    assert crop[:30].min() == 200 and crop[34:].max() == 0


def test_no_face_error_names_the_clip() -> None:
    blank = np.full((240, 320), 90, np.uint8)
    with pytest.raises(DataLayoutError, match="casme2/sub01/EP01.*no face found"):
        estimate_alignment(blank, 128, 0.1, source="casme2/sub01/EP01")


def test_cropped_release_is_recognised_by_its_file_names() -> None:
    def sample(name: str) -> Sample:
        return Sample("casme2", "sub01", "EP", Path("x"), "x", 0, frames=(Path(name),))

    assert is_cropped_release(sample("reg_img46.jpg"))
    assert is_cropped_release(sample("reg_image559740.bmp"))
    assert not is_cropped_release(sample("img46.jpg"))
