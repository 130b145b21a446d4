"""Frame reading: natural order, gray/colour, videos (PyAV and the OpenCV fallback), bad files."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from merkit.data.files import frame_number, list_frames
from merkit.data.sample import Sample
from merkit.errors import DataLayoutError
from merkit.preprocess import frames as frames_mod
from merkit.preprocess.frames import ClipFrames, read_video


def _sample(path: Path, frames: tuple[Path, ...] = (), numbers: tuple[int, ...] = ()) -> Sample:
    return Sample("toy", "s1", path.name, path, "x", 0, frames=frames, frame_numbers=numbers)


def _gradient(value: int, size: tuple[int, int] = (12, 16)) -> np.ndarray:
    image = np.full((*size, 3), value, np.uint8)
    image[:, :, 0] = np.arange(size[1], dtype=np.uint8) * 5  # distinct channels: R ramp
    return image


def _write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])
    return path


def test_folder_frames_are_listed_in_natural_numeric_order(tmp_path: Path) -> None:
    for number in (10, 2, 1):
        _write(tmp_path / f"img{number}.png", _gradient(number))
    _write(tmp_path / "img3.bmp", _gradient(3))
    (tmp_path / "notes.txt").write_text("not a frame")
    names = [p.name for p in list_frames(tmp_path)[0]]
    assert names == ["img1.png", "img2.png", "img3.bmp", "img10.png"]
    assert frame_number(Path("006_05562.jpg")) == 5562


def test_sample_frames_read_gray_and_colour_by_number(tmp_path: Path) -> None:
    for number in (5, 6, 7):
        _write(tmp_path / f"img{number}.png", _gradient(10 * number))
    sample = _sample(tmp_path)  # no frame list: the folder is listed
    color = ClipFrames(sample, color=True).read([7, 5])
    gray = ClipFrames(sample).read()
    assert color.shape == (2, 12, 16, 3) and gray.shape == (3, 12, 16)
    assert color[0, 0, 3].tolist() == [15, 70, 70]  # RGB order, frame 7 first
    assert gray[0, 0, 0] == round(0.587 * 50 + 0.114 * 50)


def test_corrupt_frame_error_names_the_file(tmp_path: Path) -> None:
    good = _write(tmp_path / "img1.jpg", _gradient(1))
    bad = tmp_path / "img2.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    sample = _sample(tmp_path, (good, bad), (1, 2))
    with pytest.raises(DataLayoutError, match="img2.jpg.*cannot be decoded"):
        ClipFrames(sample).read()


def test_frames_of_different_sizes_are_rejected(tmp_path: Path) -> None:
    _write(tmp_path / "img1.png", _gradient(1))
    _write(tmp_path / "img2.png", _gradient(2, size=(10, 16)))
    with pytest.raises(DataLayoutError, match=r"img2.png: frame size 16x10 differs from 16x12"):
        ClipFrames(_sample(tmp_path)).read()


def test_missing_frame_number_is_named(tmp_path: Path) -> None:
    _write(tmp_path / "img1.png", _gradient(1))
    with pytest.raises(DataLayoutError, match="no frame numbered 4"):
        ClipFrames(_sample(tmp_path)).read([4])


def _write_video(path: Path, count: int = 6) -> list[np.ndarray]:
    images = [np.full((32, 48, 3), 30 * i, np.uint8) for i in range(count)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return images


def test_video_is_read_with_pyav_and_with_the_opencv_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clip.mp4"
    images = _write_video(path)
    video = read_video(path)
    assert video.shape == (6, 32, 48)
    assert np.abs(video.mean(axis=(1, 2)) - [i.mean() for i in images]).max() < 4

    def broken(*args, **kwargs):
        raise av.error.InvalidDataError(0, "broken")

    monkeypatch.setattr(frames_mod, "_read_video_av", broken)
    fallback = read_video(path, color=True)
    assert fallback.shape == (6, 32, 48, 3)
    assert np.abs(fallback.astype(int) - video[..., None]).mean() < 4


def test_video_sample_frames_are_numbered_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    _write_video(path)
    clip = ClipFrames(_sample(path))
    assert clip.numbers == list(range(6))
    assert clip.read([0, 5]).shape == (2, 32, 48)
    with pytest.raises(DataLayoutError, match="no frame numbered 6"):
        clip.read([6])


def test_unreadable_video_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.avi"
    path.write_bytes(b"RIFF0000AVI garbage")
    with pytest.raises(DataLayoutError, match="broken.avi: no video frames"):
        read_video(path)
