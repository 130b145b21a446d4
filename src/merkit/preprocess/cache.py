"""On-disk cache of prepared arrays, keyed by the input files and the parameters.

A key hashes the sample's annotation (onset/apex/offset), the path, size and modification time
of every input file, and the canonical JSON of the config that produced the array: change any of
them and the entry is recomputed, touch none and a second `prepare` only reads. Entries are
written one clip at a time and atomically, so an interrupted run resumes where it stopped and a
crash never leaves a half-written entry that would later load as garbage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from merkit.data.sample import Sample
from merkit.io import write_bytes_atomic

# Bump when the preprocessing code changes what a given key produces (2: frames stored as uint8).
CACHE_VERSION = 2


def canonical_json(config: Any) -> str:
    """A dataclass (or plain data) as JSON with sorted keys: equal configs give equal text.
    A config with an `identity()` method is written as what that returns (the fields that
    decide its output)."""
    if callable(getattr(config, "identity", None)):
        config = config.identity()
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def input_files(sample: Sample) -> list[Path]:
    """The files a sample's arrays are computed from (listing a frame folder if needed)."""
    if sample.frames:
        return list(sample.frames)
    if sample.path is None:
        return []
    if sample.path.is_dir():
        return sorted(p for p in sample.path.iterdir() if p.is_file())
    return [sample.path]


def sample_key(sample: Sample, config: Any) -> str:
    """Hex digest identifying what `config` computes from `sample`'s current files."""
    digest = hashlib.sha256()
    head = [CACHE_VERSION, canonical_json(config), sample.uid, sample.onset, sample.apex]
    head += [sample.offset, sample.apex_source]
    digest.update(json.dumps(head, default=str).encode())
    for path in input_files(sample):
        _add_file(digest, path)
    return digest.hexdigest()


def _add_file(digest: Any, path: Path) -> None:
    """Feed a file's identity as it is now (path, size, modification time) to `digest`."""
    try:
        stat = Path(path).stat()
        digest.update(f"\n{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    except OSError:
        digest.update(f"\n{path}|missing".encode())


@dataclass(frozen=True)
class CacheEntry:
    """A cached array and the small metadata computed with it (e.g. a spotted apex)."""

    x: np.ndarray
    meta: dict[str, Any]


class ArrayCache:
    """A folder of `.npz` entries, one per key (fanned out by the key's first two characters)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str) -> CacheEntry | None:
        """The entry for `key`, or None if absent or unreadable (then it is recomputed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return CacheEntry(data["x"], json.loads(str(data["meta"])))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
            return None

    def save(self, key: str, x: np.ndarray, meta: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, x=x, meta=np.array(json.dumps(meta)))
        write_bytes_atomic(self.path(key), buffer.getvalue())


def file_key(path: Path, config: Any, what: str) -> str:
    """Hex digest identifying what `config` computes (`what`) from the file at `path` as it is
    now (its size and modification time), for results kept per input file, not per sample."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, what, canonical_json(config)]).encode())
    _add_file(digest, path)
    return digest.hexdigest()
