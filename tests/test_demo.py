from __future__ import annotations

import json
from pathlib import Path

import pytest

from merkit.demo import DemoConfig, run_demo
from merkit.inference import Predictor, load_checkpoint
from merkit.io import read_yaml


@pytest.mark.slow
def test_demo_pipeline_end_to_end_and_resume(tmp_path: Path) -> None:
    config = DemoConfig(
        out=tmp_path / "demo", n_subjects=4, clips_per_subject=5, model="cabm", epochs=2
    )
    first = run_demo(config, progress=False)
    run = tmp_path / "demo" / "cabm-loso"  # named for what it is
    for name in ("config.yaml", "predictions.csv", "metrics.json", "confusion.png", "report.md"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["overall"]["n"] == 20
    assert first.run.n_folds == 4 and first.run.folds_computed == 4
    assert (tmp_path / "demo" / "data" / "CASME2-coding-synthetic.xlsx").is_file()
    notes = read_yaml(run / "config.yaml")["data"]["notes"]  # the sheet's two "/" apexes
    spotted = "apex spotted by registered-difference in 2 of 20 clips"
    assert any(n.startswith(spotted) for n in notes)

    # The final model: the run's recipe and preparation, fitted on every clip.
    assert first.model == tmp_path / "demo" / "model.pt"
    meta = load_checkpoint(first.model)[1]
    assert (meta.model, meta.n_samples, meta.recipe["epochs"]) == ("cabm", 20, 2)
    assert list(meta.class_names) == metrics["class_names"]
    assert meta.prepare_config.flow == "tvl1" and meta.prepare_config.aligned  # the one default
    assert sorted(p.stem for p in first.clips) == sorted(metrics["class_names"])
    result = Predictor.load(first.model).predict(first.clips[0])
    assert result["predicted"] in metrics["class_names"] and result["frames"] == 100

    stamp = first.model.stat().st_mtime_ns
    again = run_demo(config, progress=False)
    assert again.run.folds_computed == 0 and again.run.folds_loaded == 4
    assert again.run.metrics["overall"] == first.run.metrics["overall"]
    assert first.model.stat().st_mtime_ns == stamp  # the same model is kept, not refitted

    first.model.write_bytes(b"damaged")
    run_demo(config, progress=False)
    assert load_checkpoint(first.model)[1].n_samples == 20  # a model that does not load is refitted
