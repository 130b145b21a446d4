from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from flowdata import CentroidEngine, write_flow_dataset
from merkit.cli import main
from merkit.training import base


@pytest.fixture
def flow_root(tmp_path: Path) -> Path:
    return write_flow_dataset(tmp_path / "megc")


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> CentroidEngine:
    """The CLI's engine replaced by the nearest-centroid stand-in (fast, counts its work)."""
    stand_in = CentroidEngine()
    monkeypatch.setattr(base, "default_engine", lambda: stand_in)
    return stand_in


def train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", "megc2019-flow", "--root", str(root), "--model", "cabm",
            "--out", str(out), "--epochs", "1", "--quiet", *extra]  # fmt: skip


def stderr(capsys: pytest.CaptureFixture) -> str:
    """Captured stderr with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().err.split())


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def test_train_prints_table_and_resumes(
    flow_root: Path, tmp_path: Path, engine: CentroidEngine, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "runs" / "cabm"
    main(train_args(flow_root, out, "--seeds", "0,1"))
    text = capsys.readouterr().out
    assert "mean ± std over 2 seeds" in text and "overall" in text and "casme2" in text
    assert "12 folds trained, 0 resumed" in text and f"report: {out / 'report.md'}" in text
    assert engine.folds == 12
    meta = yaml.safe_load((out / "config.yaml").read_text())
    assert meta["config"]["seeds"] == [0, 1] and meta["config"]["recipe"]["epochs"] == 1

    main(train_args(flow_root, out, "--seeds", "0,1"))
    assert "0 folds trained, 12 resumed" in capsys.readouterr().out
    assert engine.folds == 12


def test_ctrl_c_exits_130_with_a_resume_hint_then_resumes(
    flow_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    stand_in = CentroidEngine(fail_after=1)
    monkeypatch.setattr(base, "default_engine", lambda: stand_in)
    config = tmp_path / "two_folds_per_job.yaml"
    config.write_text(yaml.safe_dump({"recipe": {"model": "cabm", "folds_per_batch": 2}}))
    args = train_args(flow_root, tmp_path / "run", "--config", str(config))
    assert exit_code(args) == 130
    err = stderr(capsys)
    assert "interrupted" in err and "resumes" in err and "Traceback" not in err
    stand_in.fail_after = None
    main(args)
    assert "4 folds trained, 2 resumed" in capsys.readouterr().out


def test_train_refuses_other_config_then_overwrites(
    flow_root: Path, tmp_path: Path, engine: CentroidEngine, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    main(train_args(flow_root, out))
    assert exit_code(train_args(flow_root, out, "--seeds", "3")) == 2
    err = stderr(capsys)
    assert "different config" in err and "--overwrite" in err and "Traceback" not in err
    main(train_args(flow_root, out, "--seeds", "3", "--overwrite"))
    assert (out / "folds" / "seed3").is_dir() and not (out / "folds" / "seed0").exists()


def test_config_file_and_flag_overrides(
    flow_root: Path, tmp_path: Path, engine: CentroidEngine
) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"name": "megc2019-flow", "root": str(flow_root)},
                "protocol": {"name": "group-kfold", "options": {"n_splits": 3}},
                "recipe": {"model": "cabm", "epochs": 5, "lr": 0.01},
            }
        )
    )
    out = tmp_path / "run"
    main(["train", "--config", str(config), "--out", str(out), "--epochs", "2", "--quiet"])
    resolved = yaml.safe_load((out / "config.yaml").read_text())["config"]
    assert resolved["recipe"]["epochs"] == 2 and resolved["recipe"]["lr"] == 0.01
    assert resolved["protocol"] == {"name": "group-kfold", "options": {"n_splits": 3},
                                    "allow_leakage": False}  # fmt: skip
    assert engine.folds == 3


def test_user_errors_exit_2_with_one_line(
    flow_root: Path, tmp_path: Path, engine: CentroidEngine, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe:\n  epoch: 3\n")
    assert exit_code(["train", "--config", str(bad), "--root", str(flow_root),
                      "--out", str(tmp_path / "r1")]) == 2  # fmt: skip
    assert "unknown key 'epoch'" in stderr(capsys)
    assert exit_code(train_args(flow_root, tmp_path / "r2", "--seeds", "0,x")) == 2
    assert exit_code(train_args(flow_root, tmp_path / "r3", "--protocol", "kfold")) == 2
    assert "--allow-leakage" in stderr(capsys)
    assert exit_code(["train", "--data", "megc2019-flow", "--out", str(tmp_path / "r4")]) == 2
    assert "--root" in stderr(capsys)
    assert exit_code(["report", str(tmp_path)]) == 2
    assert "not a run folder" in stderr(capsys)


def test_leaking_protocol_warns_once(
    flow_root: Path, tmp_path: Path, engine: CentroidEngine, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    main(train_args(flow_root, out, "--protocol", "kfold", "--n-splits", "3", "--allow-leakage"))
    err = stderr(capsys)
    assert err.count("puts the same subject in train and test") == 1
    assert "subject leakage" in (out / "report.md").read_text()


def test_report_rerenders_from_predictions(
    flow_root: Path, tmp_path: Path, engine: CentroidEngine, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    main(train_args(flow_root, out))
    before = json.loads((out / "metrics.json").read_text())
    report = (out / "report.md").read_text()
    for name in ("metrics.json", "report.md", "confusion.png"):
        (out / name).unlink()
    capsys.readouterr()
    main(["report", str(out)])
    text = capsys.readouterr().out
    assert "UF1" in text and f"{before['overall']['uf1']:.4f}" in text
    assert json.loads((out / "metrics.json").read_text()) == before
    assert (out / "report.md").read_text() == report
    assert (out / "confusion.png").stat().st_size > 1000


@pytest.mark.slow
def test_train_end_to_end_with_real_engine(
    flow_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    main(train_args(flow_root, out))
    assert "6 folds trained" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["n"] == 24 and 0.0 <= metrics["overall"]["uf1"] <= 1.0
    header = (out / "predictions.csv").read_text().splitlines()[0]
    assert header.startswith("dataset,subject,sample,true,predicted,p_negative")
