from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from flowdata import CentroidEngine, write_flow_dataset
from merkit.training import base

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "megc2019_loso.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("megc2019_loso", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_prints_one_json_line_per_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(base, "default_engine", CentroidEngine)
    root = write_flow_dataset(tmp_path / "megc")
    bench = load_bench()
    bench.main(["--root", str(root), "--models", "cabm,ststnet", "--out", str(tmp_path / "runs"),
                "--seeds", "0,1", "--epochs", "1"])  # fmt: skip
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["model"] for line in lines] == ["cabm", "ststnet"]
    for line in lines:
        assert {"uf1", "uar", "accuracy", "per_dataset", "seconds", "params", "gflops"} <= set(line)
        assert set(line["per_dataset"]) == {"casme2", "samm", "smic"}
        assert line["uf1"] > 0.5 and line["params"] > 1000 and line["gflops"] > 0
        assert "uf1_std" in line and line["n"] == 24
    header = (tmp_path / "runs" / "ststnet" / "predictions.csv").read_text().splitlines()[0]
    assert header.startswith("dataset,subject,sample,true,predicted")

    bench.main(["--root", str(root), "--models", "ststnet", "--out", str(tmp_path / "runs"),
                "--seeds", "0,1", "--epochs", "1"])  # fmt: skip
    again = json.loads(capsys.readouterr().out)
    assert "gflops" not in again and "resumed" in again["note"]


def test_forward_flops_counts_a_conv() -> None:
    bench = load_bench()
    from merkit.training.recipe import default_recipe

    flops = bench.forward_flops(default_recipe("ststnet"))
    assert flops > 2 * 28 * 28 * 3  # at least one multiply-add per input value
