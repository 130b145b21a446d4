from __future__ import annotations

import json
from pathlib import Path

import pytest

from merkit.demo import DemoConfig, run_demo
from merkit.io import read_yaml


@pytest.mark.slow
def test_demo_pipeline_end_to_end_and_resume(tmp_path: Path) -> None:
    config = DemoConfig(out=tmp_path / "demo", n_subjects=4, clips_per_subject=5, epochs=2)
    first = run_demo(config, progress=False)
    run = tmp_path / "demo" / "run"
    for name in ("config.yaml", "predictions.csv", "metrics.json", "confusion.png", "report.md"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["overall"]["n"] == 20
    assert first.n_folds == 4 and first.folds_computed == 4
    assert (tmp_path / "demo" / "data" / "CASME2-coding-synthetic.xlsx").is_file()
    notes = read_yaml(run / "config.yaml")["data"]["notes"]  # the sheet's two "/" apexes
    spotted = "apex spotted by registered-difference in 2 of 20 clips"
    assert any(n.startswith(spotted) for n in notes)

    again = run_demo(config, progress=False)
    assert again.folds_computed == 0 and again.folds_loaded == 4
    assert again.metrics["overall"] == first.metrics["overall"]
