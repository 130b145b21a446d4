"""How prepared arrays are held: compact dtypes, and frames memory-mapped from the cache folder.

Apex images and frame sequences are aligned 8-bit frames: they are stored as uint8 (the
intensity x 255, exactly, since they came from uint8 images), a quarter of float32. With a cache
folder, their assembled array is written row by row into a memory-mapped `.npy` file there
(`cache/arrays/`), so a dataset at the authors' size (the MEGC2019 composite as 30 RGB frames of
128 x 128: 442 x 1.47 MB = 651 MB) is never held in process memory at once: training gathers its
batches from the file, and the operating system keeps in memory what it can. Motion maps are
small (28 x 28 x 3 floats) and stay float32 in memory.

Readers convert with `as_float32` (numpy) or `merkit.training.devices.as_float` (a batch on its
device); both give exactly the float32 values the frames had before storage.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from merkit.preprocess.config import MOTION_KINDS, PrepareConfig

ARRAYS_DIR = "arrays"


def storage_dtype(config: PrepareConfig) -> np.dtype:
    """uint8 for frames (apex images, sequences), float32 for motion maps."""
    return np.dtype(np.float32 if config.output in MOTION_KINDS else np.uint8)


def stored(x: np.ndarray, config: PrepareConfig) -> np.ndarray:
    """One prepared array (float values, frames in 0..1) in its storage dtype."""
    if storage_dtype(config) == np.uint8:
        return np.clip(np.rint(np.asarray(x, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x, dtype=np.float32)


def as_float32(x: np.ndarray) -> np.ndarray:
    """Stored arrays as float32 values: uint8 frames back to 0..1, others cast."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return np.asarray(x, dtype=np.float32)


class ArrayStore:
    """The rows of one prepared array, written as they arrive and kept in order.

    With `folder`, a memory-mapped `.npy` file under it (named by `key`, so rerunning the same
    preparation rewrites the same file; written under a temporary name and renamed when
    complete); without, an array in memory.
    """

    def __init__(
        self, n: int, item_shape: tuple[int, ...], dtype: np.dtype, folder: Path | None, key: str
    ) -> None:
        self.shape, self.dtype = (n, *item_shape), np.dtype(dtype)
        self.path: Path | None = None
        if folder is None or n == 0:
            self.rows: np.ndarray = np.zeros(self.shape, self.dtype)
            return
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{key}.npy"
        self.partial = folder / f".{key}.{os.getpid()}.npy"
        self.rows = np.lib.format.open_memmap(self.partial, "w+", self.dtype, self.shape)

    def put(self, index: int, x: np.ndarray) -> None:
        self.rows[index] = x

    def discard(self) -> None:
        """Drop an unfinished file (the run stopped before every row arrived)."""
        if self.path is not None:
            del self.rows
            self.partial.unlink(missing_ok=True)

    def finish(self, kept: Sequence[int]) -> np.ndarray:
        """The rows of `kept` (increasing indices), in order: read-only and memory-mapped when
        the store is a file."""
        for position, index in enumerate(kept):
            if position != index:
                self.rows[position] = self.rows[index]
        if self.path is None:
            return self.rows[: len(kept)]
        self.rows.flush()
        del self.rows
        os.replace(self.partial, self.path)
        return np.load(self.path, mmap_mode="r")[: len(kept)]


def store_key(keys: Sequence[str]) -> str:
    """The name of a prepared array's file, from its samples' cache keys (which hold the
    preparation and each sample's files)."""
    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode())
    return digest.hexdigest()[:32]


class MappedRows:
    """A memory-mapped array as its file, offset, dtype and shape: what a worker process needs to
    map the same file (pickling the array itself would copy its data into every worker). Made
    from the leading rows of a `.npy` memmap, as `ArrayStore.finish` returns, or a reshaped
    view of them."""

    def __init__(self, x: np.memmap) -> None:
        self.filename, self.offset = x.filename, x.offset
        self.dtype, self.shape = x.dtype.str, x.shape

    def open(self) -> np.ndarray:
        return np.memmap(self.filename, np.dtype(self.dtype), "r", self.offset, self.shape)


def shareable(x: np.ndarray) -> np.ndarray | MappedRows:
    """`x` as it should travel to another process: a file-backed contiguous array by reference,
    anything else as itself."""
    if isinstance(x, np.memmap) and x.filename is not None and x.flags.c_contiguous:
        return MappedRows(x)
    return x


def unshared(x: np.ndarray | MappedRows) -> np.ndarray:
    """The array `shareable` sent."""
    return x.open() if isinstance(x, MappedRows) else x
