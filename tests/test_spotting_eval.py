"""Scoring apex spotting against annotated apexes: the figures, the run folder, `merkit spot`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from builders import build_smic
from cli_helpers import run, widen_consoles
from merkit.data.registry import load_dataset
from merkit.errors import ConfigError
from merkit.evaluation.spotting import (
    SPOTTING_FILE,
    SpottedClip,
    claim_spotting_folder,
    spotting_metrics,
)
from merkit.evaluation.spotting_runner import SpotSettings, clip_fps, scorable
from merkit.synthetic.dataset import SyntheticConfig, generate_casme2_like

# A few of the demo's clips, small and clear enough for seconds-long tests.
TINY = SyntheticConfig(
    n_subjects=2,
    clips_per_subject=2,
    n_frames=16,
    size=96,
    amplitude_px=(2.0, 2.5),
    blink_rate=0.0,
    tic_amplitude=0.0,
    missing_apex=1,
)


def clip(error: int, *, method: str = "m", fps: float = 200.0, first: int = 100,
         last: int = 129, dataset: str = "d", confidence: float = 0.9) -> SpottedClip:  # fmt: skip
    return SpottedClip(dataset, "s1", f"c{error}", method, first, last, fps, 110, 110 + error,
                       confidence)  # fmt: skip


def test_figures_are_pooled_per_method_and_dataset() -> None:
    rows = [clip(0), clip(-2), clip(4, fps=100.0), clip(19, confidence=0.2), clip(0, method="n")]
    rows.append(clip(-10, dataset="e"))  # spotted on the first frame
    metrics = spotting_metrics(rows)
    assert list(metrics) == ["m", "n"]
    m = metrics["m"]["overall"]
    assert m["n"] == 5
    assert m["mean_abs_error_frames"] == pytest.approx((0 + 2 + 4 + 19 + 10) / 5)
    assert m["mean_abs_error_ms"] == pytest.approx((0 + 10 + 40 + 95 + 50) / 5)
    assert m["median_abs_error_frames"] == 4
    assert m["within_3_frames"] == pytest.approx(2 / 5)
    assert m["within_10pct_of_clip"] == pytest.approx(2 / 5)  # 10 % of 30 frames: 3
    assert m["on_clip_edge"] == pytest.approx(2 / 5)  # 129 (last) and 100 (first)
    assert m["within_3_frames_when_sure"] == pytest.approx(2 / 4)
    assert set(metrics["m"]["per_dataset"]) == {"d", "e"}
    assert metrics["m"]["per_dataset"]["e"]["on_clip_edge"] == 1.0


def test_only_annotated_apexes_are_scored_and_the_rate_is_known(tmp_path: Path) -> None:
    root = generate_casme2_like(tmp_path, TINY)
    samples = load_dataset("casme2", root, "all").samples
    kept, left = scorable(samples)
    assert len(kept) == 3 and left == [(left[0][0], "apex not annotated (estimated-middle)")]
    assert clip_fps(kept[0], None) == 200.0  # CASME II's loader states its rate
    assert clip_fps(kept[0], 30.0) == 30.0  # the user's rate wins: clips whose stated one lies
    bare = dataclasses.replace(kept[0], meta={})
    with pytest.raises(ConfigError, match="gives no frame rate; pass one .--fps."):
        clip_fps(bare, None)
    with pytest.raises(ConfigError, match="unknown spotting method 'x'"):
        SpotSettings(("x",))


def test_a_one_frame_clip_is_left_out_by_name(tmp_path: Path) -> None:
    """Onset = apex = offset: the apex is the only frame, so scoring it would be a free hit."""
    root = generate_casme2_like(tmp_path, TINY)
    samples = load_dataset("casme2", root, "all").samples
    sample = next(s for s in samples if s.apex_source == "annotated")
    single = dataclasses.replace(sample, onset=sample.apex, offset=sample.apex)
    kept, left = scorable([single])
    assert kept == [] and left == [(single.uid, "1 frame (onset = apex = offset): nothing to spot")]
    assert scorable([single], whole_clip=True)[0] == [single]  # its folder holds more frames
    lone = dataclasses.replace(single, frames=single.frames[:1], frame_numbers=(sample.apex,))
    assert scorable([lone], whole_clip=True)[0] == []


def test_spot_command_writes_a_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    widen_consoles(monkeypatch)
    root = generate_casme2_like(tmp_path / "data", TINY)
    out = tmp_path / "spot"
    argv = ["spot", "casme2", str(root), "--aligned", "--out", str(out), "--quiet"]
    code, stdout, _ = run([*argv, "--spotting", "registered-difference,first-frame"], capsys)
    assert code == 0, stdout
    table = pd.read_csv(out / SPOTTING_FILE)
    assert len(table) == 2 * 3 and set(table["method"]) == {"registered-difference", "first-frame"}
    assert {"annotated", "spotted", "error_frames", "error_ms", "on_edge"} <= set(table.columns)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["clips left out (no annotated apex, or 1 frame)"] == 1
    assert metrics["methods"]["registered-difference"]["overall"]["n"] == 3
    report = (out / "report.md").read_text()
    assert "within ±3 frames" in report and "Largest errors" in report
    assert "<table>" in (out / "report.html").read_text()
    assert "registered-difference" in stdout and "report:" in stdout
    code, stdout, _ = run([*argv, "--span", "clip", "--window", "8"], capsys)
    assert code == 0 and "every frame" in (out / "report.md").read_text()


def test_spot_command_needs_annotated_apexes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SMIC annotates no apex: there is nothing to score spotting against."""
    widen_consoles(monkeypatch)
    root = build_smic(tmp_path / "smic")
    out = ["--out", str(tmp_path / "spot")]
    code, _, stderr = run(["spot", "smic", str(root), "--quiet", *out], capsys)
    assert code == 2 and "no smic clip has an annotated apex and more than one frame" in stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--span", "all"], "--span 'all': choose one of annotated, clip"),
        (["--spotting", "best"], "unknown spotting method 'best'"),
        (["--workers", "0"], "--workers 0: expected at least 1"),
        (["--fps", "-5"], "--fps -5: expected a frame rate above 0 frames per second"),
        (["--fps", "nan"], "--fps nan: expected a frame rate above 0 frames per second"),
        (["--fps", "inf"], "--fps inf: expected a frame rate above 0 frames per second"),
    ],
)
def test_spot_command_refuses_bad_options(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    widen_consoles(monkeypatch)
    code, _, stderr = run(["spot", "casme2", str(tmp_path), "--quiet", *extra], capsys)
    assert code == 2 and message in stderr and "Traceback" not in stderr


def test_spot_never_writes_over_other_work(tmp_path: Path) -> None:
    """A spotting run replaces an earlier one, but its metrics.json and report would replace a
    training run's: a folder holding anything else is refused unless --overwrite."""
    spot_run, train_run = tmp_path / "spot", tmp_path / "train"
    spot_run.mkdir()
    (spot_run / SPOTTING_FILE).write_text("old")
    (spot_run / "report.md").write_text("old")
    claim_spotting_folder(spot_run)
    assert list(spot_run.iterdir()) == []
    train_run.mkdir()
    (train_run / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="is not a merkit spotting run folder"):
        claim_spotting_folder(train_run)
    claim_spotting_folder(train_run, overwrite=True)
    assert (train_run / "metrics.json").is_file()  # kept until the run writes its own
