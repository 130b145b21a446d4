from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from merkit.cli import main
from merkit.errors import AnnotationError
from merkit.evaluation.predictions import (
    Predictions,
    read_megc_logfile,
    read_predictions,
    write_predictions,
)


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    return exit_info.value.code


def test_predictions_round_trip(tmp_path: Path) -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.6, 0.3]])
    table = Predictions(
        ["samm", "smic"],
        ["006", "s01"],
        ["006_1_2", "s01_ne_01"],
        ["0", "2"],
        ["0", "1"],
        probs,
        ("negative", "positive", "surprise"),
    )
    write_predictions(tmp_path / "p.csv", table)
    back = read_predictions(tmp_path / "p.csv")
    assert back == table
    assert np.allclose(back.probabilities, probs)
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "dataset,subject,sample,true,predicted,p_negative,p_positive,p_surprise"
    assert not list(tmp_path.glob(".*tmp"))


def test_encode_accepts_names_and_indices() -> None:
    table = Predictions(["a"] * 2, ["s"] * 2, ["x", "y"], ["positive", "2"], ["0", "surprise"])
    y_true, y_pred = table.encode(["negative", "positive", "surprise"])
    assert y_true.tolist() == [1, 2] and y_pred.tolist() == [0, 2]
    with pytest.raises(AnnotationError, match="row 3: true 'anger' is not a class"):
        Predictions(["a"] * 2, ["s"] * 2, ["x", "y"], ["0", "anger"], ["0", "0"]).encode(["0"])


def test_megc_log_rejects_garbage(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_text("casme2 sub01\nEP02_01f 1 1\nthis line is wrong here\n")
    with pytest.raises(AnnotationError, match="line 3"):
        read_megc_logfile(log)


def test_score_cli_writes_json(tmp_path: Path, capsys) -> None:
    csv_path = tmp_path / "preds.csv"
    csv_path.write_text(
        "dataset,subject,sample,true,predicted\n"
        "casme2,sub01,a,0,0\ncasme2,sub01,b,1,1\nsamm,006,c,2,1\nsamm,007,d,2,2\n"
    )
    code = run_cli(["score", str(csv_path), "--classes", "negative,positive,surprise"])
    assert code == 0
    metrics = json.loads((tmp_path / "preds.metrics.json").read_text())
    assert metrics["overall"]["accuracy"] == 0.75
    assert metrics["per_dataset"]["casme2"]["uf1"] == 1.0
    assert "UF1" in capsys.readouterr().out


@pytest.mark.shared_data
def test_score_cli_on_ststnet_log(megc2019_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ststnet.json"
    args = ["score", str(megc2019_root / "STSTNet_logfile.txt"), "--megc-log", "--out", str(out)]
    assert run_cli([*args, "--classes", "negative,positive,surprise"]) == 0
    metrics = json.loads(out.read_text())
    assert round(metrics["overall"]["uf1"], 4) == 0.7353
    assert "0.7353" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("dataset,subject,true,predicted\nx,y,0,0\n", "missing column(s) sample"),
        ("dataset,subject,sample,true,predicted\n", "no prediction rows"),
        ("dataset,subject,sample,true,predicted\nx,y,z,,0\n", "row 2 has an empty 'true'"),
    ],
)
def test_score_cli_bad_input_exits_2(tmp_path: Path, capsys, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert run_cli(["score", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "bad.metrics.json").exists()


def test_score_cli_missing_file_exits_2(tmp_path: Path, capsys) -> None:
    assert run_cli(["score", str(tmp_path / "nope.csv")]) == 2
    assert "predictions file not found" in capsys.readouterr().err
