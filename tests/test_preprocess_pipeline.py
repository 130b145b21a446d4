"""`prepare`: outputs and their scale, apex spotting, failures, published flow maps."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

from merkit.data.sample import APEX_ANNOTATED, APEX_MIDDLE, APEX_SPOTTED, Sample
from merkit.errors import ConfigError, DataLayoutError
from merkit.preprocess import clip as clip_stage
from merkit.preprocess import pipeline
from merkit.preprocess.arrays import as_float32
from merkit.preprocess.clip import prepare_sample
from merkit.preprocess.flow import write_flow_map
from merkit.preprocess.flowmaps import read_flow_map
from merkit.preprocess.frames import ClipFrames
from merkit.preprocess.pipeline import PrepareConfig, export_flow_maps, prepare
from preprocess_clips import face_clip, write_frames


def _run(samples, **config) -> pipeline.Prepared:
    return prepare(samples, PrepareConfig(**config), workers=1, progress=False)


@pytest.fixture
def clip(tmp_path: Path) -> Sample:
    return face_clip(tmp_path / "EP01", count=9, apex=5, peak=3.0)


def test_flow_output_is_scaled_per_channel_and_moves_the_mouth_up(clip: Sample) -> None:
    scaled = _run([clip], flow="dis")
    assert scaled.x.shape == (1, 3, 28, 28) and scaled.x.dtype == np.float32
    assert scaled.x.min(axis=(2, 3)).tolist() == [[0, 0, 0]]
    assert scaled.x.max(axis=(2, 3)).tolist() == [[1, 1, 1]]
    raw = _run([clip], flow="dis", raw_flow=True, size=64).x[0]
    row, col = np.unravel_index(np.argmax(np.abs(raw[1])), raw[1].shape)
    assert raw[1, row, col] < -0.8  # about 3 px up in the 512 image, ~1.5 px at 64
    assert 36 < row < 56 and 22 < col < 42  # below the eyes, near the middle: the mouth


def test_apex_and_sequence_outputs(tmp_path: Path) -> None:
    sample = face_clip(tmp_path / "EP02", color=True)
    apex = _run([sample], output="apex", size=48, color=True)
    assert apex.x.shape == (1, 3, 48, 48) and apex.x.dtype == np.uint8  # frames x 255, exactly
    sequence = _run([sample], output="sequence", size=32, frames=12)
    assert sequence.x.shape == (1, 12, 1, 32, 32) and sequence.x.dtype == np.uint8
    frames = as_float32(sequence.x[0, :, 0])
    first, last = frames[0], frames[-1]
    assert np.abs(first - last).mean() < 0.01  # onset and offset: the same (neutral) face
    assert np.abs(frames[6] - first).mean() > np.abs(last - first).mean()


def test_frames_are_stored_exactly_and_memory_mapped_from_the_cache(tmp_path: Path) -> None:
    """uint8 storage loses nothing (the frames were 8-bit), and with a cache folder the array is
    a read-only memory map of a file there, rewritten (not duplicated) by a second run."""
    sample = face_clip(tmp_path / "EP02", color=True)
    config = PrepareConfig(output="sequence", size=32, frames=6, color=True)
    x, _ = prepare_sample(sample, config)
    stored_in_memory = prepare([sample], config, workers=1, progress=False).x
    assert np.array_equal(as_float32(stored_in_memory[0]), x.astype(np.float32))
    cached = prepare([sample], config, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert isinstance(cached.x, np.memmap) and not cached.x.flags.writeable
    assert np.array_equal(cached.x, stored_in_memory)
    prepare([sample], config, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert len(list((tmp_path / "cache" / "arrays").iterdir())) == 1


def test_unknown_apex_is_spotted_and_recorded(tmp_path: Path) -> None:
    sample = face_clip(tmp_path / "s1_po_01", count=9, apex=6, apex_source=APEX_MIDDLE)
    assert sample.apex == 14  # the loader's middle-frame estimate (frames 10..18)
    annotated = face_clip(tmp_path / "EP03", count=9, apex=6)
    prepared = _run([sample, annotated], flow="dis", spotting="first-frame")
    spotted, kept = prepared.samples
    assert (spotted.apex, spotted.apex_source) == (16, APEX_SPOTTED)
    assert spotted.meta["apex_method"] == "first-frame" and float(spotted.meta["apex_confidence"])
    assert (kept.apex, kept.apex_source) == (16, APEX_ANNOTATED) and "apex_method" not in kept.meta
    assert prepared.notes == [
        "apex spotted by first-frame in 1 of 2 clips (their apex is not annotated (e.g. SMIC) or "
        "not a frame of the clip); 0 of them with spotting confidence under 0.5"
    ]
    assert _run([annotated], flow="dis").notes == []
    config = PrepareConfig(flow="dis", spotting="first-frame")
    cached = [prepare([sample], config, tmp_path / "cache", 1, progress=False) for _ in range(2)]
    assert cached[1].cache_hits == 1 and cached[1].notes == cached[0].notes != []
    assert cached[1].samples[0].meta == cached[0].samples[0].meta
    with pytest.raises(ConfigError, match="spotting 'best' must be one of .'registered-diff"):
        PrepareConfig(spotting="best")


def test_one_alignment_per_clip(clip: Sample, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = clip_stage.estimate_alignment

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(clip_stage, "estimate_alignment", counting)
    _run([clip], output="sequence", frames=9, apex_policy="spot")
    assert calls == [(512, 512)]


def test_public_steps_reproduce_prepare_sample(clip: Sample) -> None:
    """`align_clip` + `clip_output` (what `merkit predict` calls) give prepare's exact arrays."""
    frames = ClipFrames(clip)
    span = list(clip.frame_numbers)
    for config in (
        PrepareConfig(flow="dis", magnify=2.0),
        PrepareConfig(output="sequence", size=16, frames=5),
    ):
        alignment = clip_stage.align_clip(clip, frames, span[0], config)
        x, _ = clip_stage.clip_output(clip, frames, span, clip.apex, alignment, config)
        np.testing.assert_array_equal(x, clip_stage.prepare_sample(clip, config)[0])
    gap = [n for n in span if n != 12]
    with pytest.raises(DataLayoutError, match="frame.s. 12 missing between 10 and 18 .* sequence"):
        clip_stage.clip_output(clip, frames, gap, clip.apex, alignment, config)


def test_clip_without_a_face_fails_alone(tmp_path: Path, clip: Sample) -> None:
    blank = [np.full((240, 320), 90, np.uint8)] * 3
    paths = write_frames(tmp_path / "EP09", blank, [1, 2, 3])
    faceless = Sample(
        "toy",
        "sub02",
        "EP09",
        tmp_path / "EP09",
        "x",
        0,
        1,
        2,
        3,
        APEX_ANNOTATED,
        frames=tuple(paths),
        frame_numbers=(1, 2, 3),
    )
    prepared = _run([faceless, clip], flow="dis")
    assert [s.uid for s in prepared.samples] == [clip.uid] and len(prepared.x) == 1
    assert len(prepared.failed) == 1
    uid, reason = prepared.failed[0]
    assert uid == "toy/sub02/EP09" and "no face found" in reason and "EP09" in reason
    with pytest.raises(DataLayoutError, match="toy/sub02/EP09.*no face found"):
        prepare(
            [faceless, clip], PrepareConfig(flow="dis"), workers=1, on_error="stop", progress=False
        )


def test_cropped_release_skips_detection(tmp_path: Path) -> None:
    flat = [np.full((340, 280), v, np.uint8) for v in (80, 90, 100)]
    paths = write_frames(tmp_path / "EP04", flat, [1, 2, 3], prefix="reg_img")
    sample = Sample(
        "casme2",
        "sub01",
        "EP04",
        tmp_path / "EP04",
        "x",
        0,
        1,
        3,
        3,
        APEX_ANNOTATED,
        frames=tuple(paths),
        frame_numbers=(1, 2, 3),
    )
    prepared = _run([sample], output="apex", size=16)
    assert prepared.failed == [] and as_float32(prepared.x[0]).mean() == pytest.approx(100 / 255)


def test_annotation_outside_the_frames_is_reported(clip: Sample) -> None:
    bad = dataclasses.replace(clip, onset=3)
    prepared = _run([bad], flow="dis")
    assert prepared.x.shape == (0, 3, 28, 28)
    assert "onset frame 3" in prepared.failed[0][1]


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="output 'optical'"):
        PrepareConfig(output="optical")
    with pytest.raises(ConfigError, match="flow 'lk'"):
        PrepareConfig(flow="lk")
    with pytest.raises(ConfigError, match="on_error"):
        prepare([], on_error="ignore", progress=False)


def _map_samples(folder: Path, count: int) -> list[Sample]:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(count):
        path = folder / f"s01_s01_ne_{i:02d} .png"
        write_flow_map(path, rng.normal(size=(3, 28, 28)))
        samples.append(Sample("smic", "s01", f"s01_ne_{i:02d}", path, "negative", 0))
    return samples


def test_published_maps_are_read_directly_and_resized(tmp_path: Path) -> None:
    samples = _map_samples(tmp_path / "maps", 3)
    prepared = _run(samples)
    np.testing.assert_array_equal(prepared.x[1], read_flow_map(samples[1]))
    assert prepared.computed == 0 and prepared.cache_hits == 0
    bigger = _run(samples, size=64)
    assert bigger.x.shape == (3, 3, 64, 64)
    assert bigger.x.min(axis=(2, 3)).max() == 0 and bigger.x.max(axis=(2, 3)).min() == 1
    raw = _run(samples, raw_flow=True)
    assert len(raw.failed) == 3 and "min-max scaled" in raw.failed[0][1]


def test_computed_maps_export_in_the_published_naming(tmp_path: Path, clip: Sample) -> None:
    prepared = _run([clip], flow="dis")
    (path,) = export_flow_maps(prepared, tmp_path / "out")
    assert path.name == "sub01_EP01 .png"
    again = read_flow_map(Sample("toy", "sub01", "EP01", path, "x", 0))
    np.testing.assert_allclose(again, prepared.x[0], atol=0.5 / 255 + 1e-6)


@pytest.mark.shared_data
def test_real_megc2019_maps_prepare_in_well_under_a_second(megc2019_root: Path) -> None:
    from merkit.data.registry import load_dataset

    dataset = load_dataset("megc2019-flow", megc2019_root)
    started = time.perf_counter()
    prepared = prepare(dataset.samples, PrepareConfig(), progress=False)
    seconds = time.perf_counter() - started
    assert prepared.x.shape == (380, 3, 28, 28) and prepared.failed == []
    assert seconds < 0.5, f"{seconds:.2f} s for 380 maps"


def test_magnification_enlarges_the_measured_motion(tmp_path: Path) -> None:
    sample = face_clip(tmp_path / "EP05", count=13, apex=8, peak=1.0)
    peaks = [
        -_run([sample], flow="dis", raw_flow=True, size=64, magnify=alpha).x[0, 1].min()
        for alpha in (0.0, 4.0)
    ]
    assert peaks[1] > 1.8 * peaks[0] > 0.4


def test_an_earlier_releases_flow_output_reads_as_maps() -> None:
    """'flow' now means optical flow only; a config or checkpoint saying output 'flow' (the
    maps' old name) still reads, as 'maps', with the same cache identity."""
    assert PrepareConfig(output="flow") == PrepareConfig(output="maps")
    assert PrepareConfig(output="flow").identity()["output"] == "maps"
