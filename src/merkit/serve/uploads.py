"""An uploaded clip on disk: a video file as it came, or a zip's frames unpacked into a folder.

Everything lands in one temporary folder per upload (removed when its job ends). A zip is read
member by member: only image files are unpacked, under their base name alone (a member named
`../../x.jpg` becomes `x.jpg`), and only when their sizes add up to less than a limit, so
neither a crafted path nor a zip bomb can write outside the folder or past the stated limit.

Every folder the server makes (uploads, scratch copies of runs) is named after its process,
`merkit-serve-{pid}-...`, so the next server to start removes those of a server that was killed
before it could (`sweep`), and leaves those of a server still running.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from merkit.data.files import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from merkit.errors import MerkitError

ZIP_SUFFIX = ".zip"
ZIP_EXPANSION = 4  # a zip's frames may unpack to this many times the upload limit
CHUNK = 1 << 20
FRAMES_FOLDER = "frames"
FOLDER_PREFIX = "merkit-serve-"
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


class TooLarge(MerkitError):
    """An upload (or a zip's unpacked frames) over the stated limit."""


class NotAClip(MerkitError):
    """A file that is neither a video nor a zip of frames."""


def folder_prefix() -> str:
    """The start of the name of every folder this server process makes."""
    return f"{FOLDER_PREFIX}{os.getpid()}-"


def new_folder(parent: Path | None) -> Path:
    """A new folder for one upload, under `parent` (None: the system's temporary folder)."""
    return Path(tempfile.mkdtemp(prefix=folder_prefix(), dir=parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep(parent: Path | None) -> list[Path]:
    """Remove the folders that killed servers left under `parent` (None: the system's
    temporary folder): this user's, named after a process that no longer runs."""
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name.removeprefix(FOLDER_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or int(pid) <= 0 or folder.is_symlink() or not folder.is_dir():
            continue
        if folder.stat().st_uid == os.getuid() and not _alive(int(pid)):
            remove(folder)
            removed.append(folder)
    return removed


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size < 10e6 else f"{size / 1e6:.0f} MB"


def too_large(name: str, size: int | None, limit: int) -> TooLarge:
    measured = f" ({megabytes(size)})" if size is not None else ""
    return TooLarge(
        f"{name}{measured} is over the {megabytes(limit)} upload limit (start merkit serve with "
        "a larger --max-upload-mb to allow more)"
    )


def safe_name(filename: str | None) -> str:
    """The upload's base name with only plain characters (the client chooses it)."""
    name = _UNSAFE.sub("_", PurePosixPath((filename or "").replace("\\", "/")).name).strip(" .")
    return name or "upload"


def _copy(source: BinaryIO, target: Path, limit: int) -> bool:
    """Copy at most `limit` bytes; False (and nothing left behind) when there were more."""
    written = 0
    with target.open("wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > limit:
                break
            out.write(chunk)
    if written > limit:
        target.unlink()
    return written <= limit


def save_upload(source: BinaryIO, filename: str | None, folder: Path, limit: int) -> Path:
    """Write an uploaded file into `folder`; return the input `Predictor` should read: the video
    file itself, or the folder of a zip's frames."""
    name = safe_name(filename)
    suffix = Path(name).suffix.lower()
    if suffix not in (*VIDEO_SUFFIXES, ZIP_SUFFIX):
        raise NotAClip(
            f"{name}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a zip of frames "
            f"({', '.join(IMAGE_SUFFIXES)} files)"
        )
    path = folder / name
    if not _copy(source, path, limit):
        raise too_large(name, None, limit)
    if suffix != ZIP_SUFFIX:
        return path
    frames = unpack_frames(path, folder / FRAMES_FOLDER, ZIP_EXPANSION * limit)
    path.unlink()
    return frames


def _base(member: zipfile.ZipInfo) -> str:
    return PurePosixPath(member.filename).name


def _hidden(part: str) -> bool:
    """A dot file or folder, or macOS's resource forks (`..` is not hidden: it is dropped when
    the member is unpacked under its base name)."""
    return (part.startswith(".") and part not in (".", "..")) or part == "__MACOSX"


def unpack_frames(archive: Path, target: Path, limit: int) -> Path:
    """The image members of one folder of a zip, unpacked flat into `target`."""
    name = archive.name
    if not zipfile.is_zipfile(archive):
        raise NotAClip(f"{name}: not a readable zip file")
    with zipfile.ZipFile(archive) as bundle:
        members = [
            info
            for info in bundle.infolist()
            if not info.is_dir()
            and PurePosixPath(info.filename).suffix.lower() in IMAGE_SUFFIXES
            and not any(_hidden(part) for part in PurePosixPath(info.filename).parts)
        ]
        if not members:
            raise NotAClip(f"{name}: the zip holds no image frames ({', '.join(IMAGE_SUFFIXES)})")
        folders = sorted({str(PurePosixPath(m.filename).parent) for m in members})
        if len(folders) > 1:
            shown = ", ".join(f"{f}/" for f in folders[:3]) + (", ..." if len(folders) > 3 else "")
            raise NotAClip(
                f"{name}: frames in {len(folders)} folders ({shown}); zip the frames of one clip"
            )
        # zipfile stops each member at its declared size (a member that holds more fails its
        # CRC check), so the declared sizes bound what unpacking writes.
        if sum(m.file_size for m in members) > limit:
            raise TooLarge(
                f"{name}: its frames unpack to more than {megabytes(limit)} ({ZIP_EXPANSION}x "
                "the upload limit); zip fewer or smaller frames"
            )
        target.mkdir()
        for member in members:
            try:
                with bundle.open(member) as source, (target / _base(member)).open("wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, zlib.error) as exc:
                raise NotAClip(f"{name}: {member.filename} cannot be unpacked ({exc})") from None
    return target


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
