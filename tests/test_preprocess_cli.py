"""`merkit prepare`: summary table, cache hits on the second run, failures, map export."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from merkit.cli import main
from merkit.cli.app import console
from merkit.data import registry
from merkit.data.base import SampleSet
from merkit.data.sample import APEX_ANNOTATED, Sample
from preprocess_clips import face_clip, write_frames


def _toy_samples(root: Path) -> list[Sample]:
    """One clip with a face and one without, written once (later runs must hit the cache)."""
    good = face_clip(root / "EP01", count=5, apex=2)
    paths = write_frames(root / "EP02", [np.full((120, 160), 90, np.uint8)] * 2, [1, 2])
    faceless = Sample(
        "toy",
        "sub02",
        "EP02",
        root / "EP02",
        "x",
        0,
        1,
        2,
        2,
        APEX_ANNOTATED,
        frames=tuple(paths),
        frame_numbers=(1, 2),
    )
    return [good, faceless]


@pytest.fixture
def toy_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    samples = _toy_samples(tmp_path / "data")

    def load(root: Path, taxonomy: str = "all") -> SampleSet:
        return SampleSet("toy-prepare", root, ("happiness",), taxonomy, samples)

    info = registry.DatasetInfo("toy-prepare", "toy", "EP*/img*.jpg", ("all",), load)
    registry._ensure_loaded()
    monkeypatch.setitem(registry._DATASETS, "toy-prepare", info)
    return "toy-prepare"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables must not wrap reasons across lines in the captured output."""
    monkeypatch.setattr(console, "width", 200)


def _prepare(args: list[str], capsys: pytest.CaptureFixture) -> str:
    main(["prepare", *args])
    return capsys.readouterr().out


def _row(out: str, name: str) -> str:
    """The value cell of the summary row `name` (tables print plain rows off a terminal)."""
    line = next(line for line in out.splitlines() if f" {name} " in line)
    return line.split()[-1]


def test_prepare_reports_hits_and_failures(
    tmp_path: Path, toy_dataset: str, capsys: pytest.CaptureFixture
) -> None:
    args = [
        toy_dataset,
        str(tmp_path / "data"),
        "--cache",
        str(tmp_path / "cache"),
        "--flow",
        "dis",
    ]
    args += ["--workers", "1", "--export-maps", str(tmp_path / "maps")]
    first = _prepare(args, capsys)
    assert (_row(first, "computed now"), _row(first, "cache hits"), _row(first, "failed")) == (
        "1",
        "0",
        "1",
    )
    assert "toy/sub02/EP02" in first and "no face found" in first
    assert [p.name for p in (tmp_path / "maps").iterdir()] == ["sub01_EP01 .png"]
    second = _prepare(args, capsys)
    assert (_row(second, "computed now"), _row(second, "cache hits")) == ("0", "1")


def test_export_needs_flow_output(tmp_path: Path, toy_dataset: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", toy_dataset, str(tmp_path), "--output", "apex", "--export-maps", "x"])
    assert exit_info.value.code == 2


@pytest.mark.shared_data
def test_published_maps_are_exported_pixel_identical(
    megc2019_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = _prepare(
        [
            "megc2019-flow",
            str(megc2019_root),
            "--cache",
            str(tmp_path / "c"),
            "--export-maps",
            str(tmp_path / "maps"),
        ],
        capsys,
    )
    assert _row(out, "prepared") == "380"
    source = megc2019_root / "STSNet_whole_norm_u_v_os"
    for path in sorted((tmp_path / "maps").glob("*.png"))[::40]:
        original = cv2.imread(str(source / path.name), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), original)


def test_region_output_reports_how_the_points_were_found(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from builders import build_megc2019_flow

    root = build_megc2019_flow(tmp_path / "megc", apex_faces=range(8))
    args = ["megc2019-flow", str(root), "--cache", str(tmp_path / "c"), "--workers", "1"]
    out = _prepare([*args, "--output", "regions"], capsys)
    assert _row(out, "prepared") == "8"
    found = [int(_row(out, f"points: {s}")) for s in ("detected", "face-box", "fallback")]
    assert sum(found) == 8
    assert " points: " not in _prepare(args, capsys)  # flow maps: no points


def test_apex_policy_spot_spots_even_an_annotated_apex(
    tmp_path: Path, toy_dataset: str, capsys: pytest.CaptureFixture
) -> None:
    args = [toy_dataset, str(tmp_path / "data"), "--cache", str(tmp_path / "cache")]
    args += ["--flow", "dis", "--workers", "1"]
    assert "apex spotted" not in _prepare(args, capsys)
    out = _prepare([*args, "--apex-policy", "spot"], capsys)
    assert _row(out, "computed now") == "1"  # a config of its own, not the annotated one's cache
    note = "apex spotted by registered-difference in 1 of 1 clips (apex_policy 'spot')"
    assert note in " ".join(out.split())
