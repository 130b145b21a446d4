"""Cache: keyed by inputs and parameters, atomic, resumable; the process pool agrees with serial."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from merkit.preprocess.cache import ArrayCache, canonical_json, sample_key
from merkit.preprocess.pipeline import PrepareConfig, prepare
from preprocess_clips import face_clip

FAST = PrepareConfig(flow="dis", size=16)


@pytest.fixture
def clips(tmp_path: Path) -> list:
    return [face_clip(tmp_path / f"EP0{i}", count=5, apex=2, peak=2.0 + i) for i in range(3)]


def _prepare(samples, cache: Path, config: PrepareConfig = FAST, **kwargs):
    return prepare(samples, config, cache_dir=cache, workers=1, progress=False, **kwargs)


def test_second_prepare_is_all_cache_hits(tmp_path: Path, clips: list) -> None:
    first = _prepare(clips, tmp_path / "cache")
    assert (first.computed, first.cache_hits) == (3, 0)
    second = _prepare(clips, tmp_path / "cache")
    assert (second.computed, second.cache_hits) == (0, 3)
    np.testing.assert_array_equal(first.x, second.x)
    assert second.seconds < 0.5
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".tmp")]
    assert leftovers == []


def test_interrupted_preparation_resumes(tmp_path: Path, clips: list) -> None:
    _prepare(clips[:2], tmp_path / "cache")  # as if the run stopped after two clips
    resumed = _prepare(clips, tmp_path / "cache")
    assert (resumed.computed, resumed.cache_hits) == (1, 2)


def test_changed_input_or_parameters_miss(tmp_path: Path, clips: list) -> None:
    _prepare(clips, tmp_path / "cache")
    frame = clips[1].frames[0]
    stat = frame.stat()
    os.utime(frame, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = _prepare(clips, tmp_path / "cache")
    assert (touched.computed, touched.cache_hits) == (1, 2)
    bigger = _prepare(clips, tmp_path / "cache", PrepareConfig(flow="dis", size=20))
    assert (bigger.computed, bigger.cache_hits) == (3, 0)


def test_corrupt_entry_is_recomputed(tmp_path: Path, clips: list) -> None:
    _prepare(clips[:1], tmp_path / "cache")
    key = sample_key(clips[0], FAST)
    ArrayCache(tmp_path / "cache").path(key).write_bytes(b"half a file")
    again = _prepare(clips[:1], tmp_path / "cache")
    assert (again.computed, again.cache_hits) == (1, 0)


def test_spotted_apex_survives_the_cache(tmp_path: Path, clips: list) -> None:
    config = PrepareConfig(flow="dis", size=16, apex_policy="spot")
    first = _prepare(clips, tmp_path / "cache", config)
    cached = _prepare(clips, tmp_path / "cache", config)
    assert [s.apex for s in cached.samples] == [s.apex for s in first.samples] == [12, 12, 12]
    assert {s.apex_source for s in cached.samples} == {"spotted"}


def test_key_uses_canonical_config_json() -> None:
    assert canonical_json(FAST) == canonical_json(PrepareConfig(size=16, flow="dis"))
    assert canonical_json(FAST).startswith('{"aligned":false,')


def test_process_pool_matches_serial(tmp_path: Path, clips: list) -> None:
    serial = prepare(clips, FAST, workers=1, progress=False)
    pooled = prepare(clips, FAST, cache_dir=tmp_path / "cache", workers=2, progress=True)
    np.testing.assert_array_equal(serial.x, pooled.x)
    assert [s.uid for s in pooled.samples] == [s.uid for s in clips]
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 3
