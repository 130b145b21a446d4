"""Which files are frames, in which order, with which numbers: shared by loaders and readers.

The number in a frame's file name is what onset/apex/offset refer to, so frames are listed by
that number (`img9` before `img10`), and two files carrying the same number are refused. Every
listing expects hostile folders (unreadable, symlink loops) and turns a failure into one
DataLayoutError naming the folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from merkit.errors import DataLayoutError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")
_DIGITS = re.compile(r"(\d+)")


def listing(folder: Path) -> list[Path]:
    """Entries of `folder`; an unreadable or missing folder is a DataLayoutError naming it."""
    try:
        return list(folder.iterdir())
    except NotADirectoryError:
        raise DataLayoutError(f"{folder}: is a file, expected a folder") from None
    except FileNotFoundError:
        raise DataLayoutError(f"{folder}: folder does not exist") from None
    except OSError as exc:
        raise DataLayoutError(f"{folder}: cannot list the folder ({exc.strerror})") from None


def natural_key(path: Path) -> tuple:
    """Sort key that compares digit runs as numbers (`img2.jpg` before `img10.jpg`)."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in _DIGITS.split(path.name))


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def frame_number(path: Path) -> int | None:
    """The frame index written in a file name: its last run of digits (`006_05562` -> 5562)."""
    digits = _DIGITS.findall(path.stem)
    return int(digits[-1]) if digits else None


def list_frames(folder: Path) -> tuple[tuple[Path, ...], tuple[int, ...]]:
    """Image files of a clip folder in numeric order, and the number each name carries.

    Only regular files (or links to them) count, so a symlink loop is skipped, never followed.
    Raises DataLayoutError when the folder cannot be listed or two files carry the same number,
    since the annotation's frame numbers would then be ambiguous.
    """
    numbered: dict[int, Path] = {}
    for path in listing(folder):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        number = frame_number(path)
        if number is None:
            continue
        if number in numbered:
            raise DataLayoutError(
                f"{folder}: frames {numbered[number].name} and {path.name} carry the same "
                f"number {number}"
            )
        numbered[number] = path
    order = sorted(numbered)
    return tuple(numbered[n] for n in order), tuple(order)


def clip_frames(folder: Path) -> tuple[tuple[Path, ...], tuple[int, ...]]:
    """Frames of a clip folder; DataLayoutError when the folder is missing or holds no frame."""
    if not folder.is_dir():
        raise DataLayoutError(f"frame folder {folder} does not exist")
    frames, numbers = list_frames(folder)
    if not frames:
        raise DataLayoutError(f"frame folder {folder} holds no numbered image")
    return frames, numbers


def subdirs(folder: Path) -> Iterator[Path]:
    """Sub-folders of `folder` in natural order (s2 before s10), hidden ones left out."""
    found = [p for p in listing(folder) if p.is_dir() and not p.name.startswith(".")]
    yield from sorted(found, key=natural_key)
