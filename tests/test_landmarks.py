"""Five facial points on face images: which of dlib's 68, when they are refused, and the cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from builders import write_face_image
from merkit.errors import DataLayoutError
from merkit.preprocess import landmarks
from merkit.preprocess.landmarks import (
    DETECTED,
    FACE_BOX,
    FALLBACK,
    PointsConfig,
    find_points,
    five_points,
    image_points,
    plausible,
    read_gray,
)

# Points of a frontal face in a 100 px image, in HTNet's order.
FACE = np.array([[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 78.0], [65.0, 78.0]])


def test_five_points_are_eye_centres_nose_tip_and_mouth_corners() -> None:
    marks = np.zeros((68, 2))
    marks[36:42] = [10.0, 20.0]
    marks[36] = [4.0, 20.0]  # the eye centre is the mean of its six points
    marks[42:48] = [30.0, 21.0]
    marks[30], marks[48], marks[54] = [20.0, 30.0], [12.0, 40.0], [28.0, 41.0]
    expected = [[9.0, 20.0], [30.0, 21.0], [20.0, 30.0], [12.0, 40.0], [28.0, 41.0]]
    np.testing.assert_allclose(five_points(marks), expected)


def test_geometry_that_is_not_an_upright_face_is_refused() -> None:
    assert plausible(FACE, 100)
    assert not plausible(FACE[[1, 0, 2, 3, 4]], 100)  # eyes swapped
    assert not plausible(FACE * [1, -1] + [0, 100], 100)  # upside down
    assert not plausible((FACE - 50) * 0.2 + 50, 100)  # eyes 8 px apart in a 100 px image
    nose_low = FACE.copy()
    nose_low[2, 1] = 90.0
    assert not plausible(nose_low, 100)


def test_no_face_without_the_whole_image_box_falls_back() -> None:
    flat = np.full((64, 64), 128, np.uint8)
    assert find_points(flat, PointsConfig(whole_image=False)) == (None, FALLBACK)


def test_implausible_points_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(landmarks, "detect_face", lambda image: (0, 0, 10, 10))
    monkeypatch.setattr(landmarks, "five_points", lambda marks: FACE[::-1].copy())
    assert find_points(np.zeros((100, 100), np.uint8)) == (None, FALLBACK)


def test_detected_points_map_back_through_the_enlargement(monkeypatch: pytest.MonkeyPatch):
    """Points found on the 2x image framed by a border come back in the image's own pixels."""
    seen = {}

    def fake_landmarks(image: np.ndarray, box: tuple) -> np.ndarray:
        seen["shape"] = image.shape
        marks = np.zeros((68, 2))
        points = (FACE + 0.5) * 2 - 0.5 + 20  # FACE on the 2x image, then a 20 px border
        marks[36:42], marks[42:48] = points[0], points[1]
        marks[30], marks[48], marks[54] = points[2], points[3], points[4]
        return marks

    monkeypatch.setattr(landmarks, "detect_face", lambda image: (0, 0, 10, 10))
    monkeypatch.setattr(landmarks, "face_landmarks", fake_landmarks)
    points, source = find_points(np.zeros((100, 100), np.uint8), PointsConfig(border=0.1))
    assert source == DETECTED and seen["shape"] == (240, 240)
    np.testing.assert_allclose(points, FACE)


def test_a_synthetic_face_gets_points_where_the_face_is(tmp_path: Path) -> None:
    gray = read_gray(write_face_image(tmp_path / "face.jpg", seed=2))
    points, source = find_points(gray)
    assert source in (DETECTED, FACE_BOX)
    assert plausible(points, gray.shape[1])
    assert points[:2, 1].max() < gray.shape[0] / 2 < points[3:, 1].min()  # eyes up, mouth down


def test_points_are_cached_per_image_and_recomputed_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    face = write_face_image(tmp_path / "face.jpg", seed=2)
    cache = tmp_path / "cache"
    first = image_points(face, cache_dir=cache)
    assert first[2] == (96, 96) and len(list(cache.rglob("*.npz"))) == 1

    def fail(*args: object) -> None:
        raise AssertionError("points were recomputed")

    monkeypatch.setattr(landmarks, "find_points", fail)
    again = image_points(face, cache_dir=cache)
    np.testing.assert_array_equal(again[0], first[0])
    assert again[1:] == first[1:]
    stat = face.stat()
    os.utime(face, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new file: recomputed
    with pytest.raises(AssertionError, match="recomputed"):
        image_points(face, cache_dir=cache)
    assert not list(cache.rglob("*.tmp"))


def test_a_fallback_is_cached_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    face = write_face_image(tmp_path / "face.jpg", seed=2)
    monkeypatch.setattr(landmarks, "find_points", lambda gray, config: (None, FALLBACK))
    assert image_points(face, cache_dir=tmp_path)[:2] == (None, FALLBACK)
    monkeypatch.setattr(landmarks, "find_points", None)
    assert image_points(face, cache_dir=tmp_path)[:2] == (None, FALLBACK)


def test_an_undecodable_face_image_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "face.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataLayoutError, match="face.jpg: cannot decode"):
        image_points(broken)


@pytest.mark.shared_data
def test_real_apex_faces_get_detected_points(megc2019_root: Path) -> None:
    faces = sorted((megc2019_root / "apex").glob("*.jpg"))[::76]  # 5 of the 380
    found = [find_points(read_gray(path)) for path in faces]
    assert [source for _, source in found] == [DETECTED] * len(faces)
    for points, _ in found:
        assert plausible(points, 224)
        iod = np.hypot(*(points[1] - points[0]))
        assert 60 < iod < 140  # the eyes of a tight 224 px face crop
