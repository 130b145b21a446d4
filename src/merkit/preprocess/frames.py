"""Decoding the frames of a clip: image folders (jpg/bmp/png) and video files.

Loaders only list files; this is the first place pixels are decoded, so every failure here names
the file at fault (a corrupt JPEG deep inside a dataset should not surface as a NumPy error).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from merkit.data.files import clip_frames, frame_number, is_video
from merkit.data.sample import Sample
from merkit.errors import DataLayoutError

# A valid file may decode a frame or two fewer than its header counts (edit lists, decoder
# delay); a partial copy loses far more. Only a larger shortfall is called truncation.
TRUNCATION_SLACK = 2


def _number(path: Path) -> int:
    number = frame_number(path)
    if number is None:
        raise DataLayoutError(f"{path}: frame file name holds no frame number")
    return number


def _jpeg_is_truncated(data: bytes) -> bool:
    """A JPEG whose last scan has no end-of-image marker after it: the file was cut short.

    libjpeg decodes such a file "successfully", filling the lost rows with grey, which optical
    flow would then read as motion; so the check is done here. Bytes after the marker (padding
    some cameras add) are fine.
    """
    return data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def read_image(path: Path, color: bool = False) -> np.ndarray:
    """One frame as uint8: (H, W) grayscale or (H, W, 3) RGB."""
    expected = "expected a readable jpg/bmp/png image"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        state = "does not exist" if not Path(path).exists() else f"cannot be read ({exc.strerror})"
        raise DataLayoutError(f"{path}: frame {state}; {expected}") from None
    if not data:
        raise DataLayoutError(f"{path}: frame is an empty (0-byte) file; {expected}")
    if _jpeg_is_truncated(data):
        raise DataLayoutError(f"{path}: frame is a truncated JPEG (no end marker); {expected}")
    flag = cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise DataLayoutError(f"{path}: frame cannot be decoded (corrupt?); {expected}")
    return image[:, :, ::-1] if color else image


def read_images(paths: Sequence[Path], color: bool = False) -> np.ndarray:
    """Frames stacked to (T, H, W[, 3]) uint8; all must share one size."""
    if not paths:
        raise DataLayoutError("no frames to read")
    frames = []
    for path in paths:
        image = read_image(path, color)
        if frames and image.shape != frames[0].shape:
            raise DataLayoutError(
                f"{path}: frame size {image.shape[1]}x{image.shape[0]} differs from "
                f"{frames[0].shape[1]}x{frames[0].shape[0]} of {paths[0].name}"
            )
        frames.append(image)
    return np.stack(frames)


def _to_output(rgb: np.ndarray, color: bool) -> np.ndarray:
    return rgb if color else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


Decoded = tuple[list[np.ndarray], int]  # frames, and the count the container declares (0: none)


def _read_video_av(path: Path, color: bool, max_frames: int | None) -> Decoded:
    import av

    frames = []
    with av.open(str(path)) as container:
        declared = container.streams.video[0].frames
        for frame in container.decode(video=0):
            frames.append(_to_output(frame.to_ndarray(format="rgb24"), color))
            if max_frames is not None and len(frames) >= max_frames:
                break
    return frames, declared


def _read_video_cv2(path: Path, color: bool, max_frames: int | None) -> Decoded:
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        declared = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        while max_frames is None or len(frames) < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(_to_output(bgr[:, :, ::-1], color))
    finally:
        capture.release()
    return frames, declared


def read_video(path: Path, color: bool = False, max_frames: int | None = None) -> np.ndarray:
    """All frames of a video file as (T, H, W[, 3]) uint8; PyAV first, OpenCV as fallback.

    A file that yields fewer frames than its container declares was cut short (a partial copy
    or download): it is refused, since its frame numbers would silently lose the end.
    """
    path = Path(path)
    if not path.is_file():
        raise DataLayoutError(f"{path}: video file does not exist")
    frames: list[np.ndarray] = []
    declared = 0
    try:
        frames, declared = _read_video_av(path, color, max_frames)
    except ImportError:
        pass
    except Exception:  # PyAV raises its own error family for broken containers; try OpenCV
        frames = []
    if not frames:
        frames, declared = _read_video_cv2(path, color, max_frames)
    if not frames:
        raise DataLayoutError(f"{path}: no video frames could be decoded (corrupt or unsupported)")
    if max_frames is None and len(frames) < declared - TRUNCATION_SLACK:
        raise DataLayoutError(
            f"{path}: video is truncated or damaged: {len(frames)} of the {declared} frames "
            "its header declares could be decoded"
        )
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        raise DataLayoutError(f"{path}: video frames change size mid-stream ({sorted(shapes)})")
    return np.ascontiguousarray(np.stack(frames))


class ClipFrames:
    """The frames of one sample, decoded on demand by frame number.

    Frame folders are decoded file by file (only the frames asked for); a video is decoded once,
    whole, and its frame numbers are 0-based positions in it.
    """

    def __init__(self, sample: Sample, color: bool = False) -> None:
        self.sample = sample
        self.color = color
        self._size: tuple[int, int, Path] | None = None  # (H, W, file) of the first frame read
        self._video: np.ndarray | None = None
        self._files: dict[int, Path] = {}
        if not sample.frames and sample.path is not None and is_video(sample.path):
            self._video = read_video(sample.path, color)
            self.numbers = list(range(len(self._video)))
            return
        if sample.frames:
            files = list(sample.frames)
            numbers = list(sample.frame_numbers) or [_number(p) for p in files]
        elif sample.path is not None:
            found, numbered = clip_frames(sample.path)
            files, numbers = list(found), list(numbered)
        else:
            raise DataLayoutError(f"{sample.uid}: sample has neither frames nor a path")
        self._files = dict(zip(numbers, files, strict=True))
        self.numbers = numbers

    def read(self, numbers: Sequence[int] | None = None) -> np.ndarray:
        """Frames numbered `numbers` (all if None) as (T, H, W[, 3]) uint8."""
        numbers = self.numbers if numbers is None else list(numbers)
        missing = [n for n in numbers if n not in self._files and not self._in_video(n)]
        if missing:
            where = self.sample.path or self.sample.uid
            raise DataLayoutError(f"{where}: no frame numbered {missing[0]} in {self.sample.uid}")
        if self._video is not None:
            return self._video[numbers]
        images = read_images([self._files[n] for n in numbers], self.color)
        self._check_size(images, self._files[numbers[0]])
        return images

    def _check_size(self, images: np.ndarray, path: Path) -> None:
        """Frames read in separate calls (onset now, apex later) must share one size too."""
        height, width = images.shape[1:3]
        if self._size is None:
            self._size = (height, width, path)
        elif self._size[:2] != (height, width):
            first_h, first_w, first = self._size
            raise DataLayoutError(
                f"{path}: frame size {width}x{height} differs from {first_w}x{first_h} of "
                f"{first.name} in the same clip"
            )

    def _in_video(self, number: int) -> bool:
        return self._video is not None and 0 <= number < len(self._video)
