from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from flowdata import CentroidEngine, write_flow_dataset
from merkit.cli import main
from merkit.errors import ConfigError
from merkit.training import base
from merkit.training.config import ExperimentConfig
from merkit.training.leakage_audit import inflation, run_audit
from test_html_report import check_page

EPOCHS = 4


class EpochEngine:
    """`fit_predict(output="epochs")` stand-in: nearest-centroid probabilities at every epoch
    but the last, which is heavily noised (an "overfit" last epoch the oracle can avoid by
    peeking)."""

    def __init__(self) -> None:
        self.folds = 0
        self.centroid = CentroidEngine(noise=0.0)

    def fit_predict(self, recipe, x, y, folds, num_classes, seed=0, *, progress=None, **kw):
        assert kw["output"] == "epochs"
        self.folds += len(folds)
        final = self.centroid.fit_predict(recipe, x, y, folds, num_classes, seed)
        rng = np.random.default_rng(seed + self.folds)
        out = []
        for probs in final:
            epochs = []
            for e in range(recipe.epochs):
                noisy = probs + rng.uniform(0, 2.0, probs.shape) * (e == recipe.epochs - 1)
                epochs.append(noisy / noisy.sum(axis=1, keepdims=True))
            out.append(np.stack(epochs))
        if progress is not None:
            progress(1, 1)
        return out


@pytest.fixture
def flow_root(tmp_path: Path) -> Path:
    return write_flow_dataset(tmp_path / "megc", per_subject=4)


def config(root: Path) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "data": {"name": "megc2019-flow", "root": str(root)},
            "recipe": {"model": "cabm", "epochs": EPOCHS},
        }
    )


def test_inflation_is_leaking_minus_honest() -> None:
    honest = {"overall": {"uf1": 0.5, "uar": 0.4, "accuracy": 0.6, "macro_precision": 0.5},
              "per_dataset": {"samm": {"uf1": 0.2, "uar": 0.2, "accuracy": 0.3,
                                       "macro_precision": 0.1}}}  # fmt: skip
    leaking = {"overall": {"uf1": 0.9, "uar": 0.7, "accuracy": 0.6, "macro_precision": 0.5},
               "per_dataset": {"samm": {"uf1": 0.3, "uar": 0.2, "accuracy": 0.4,
                                        "macro_precision": 0.1}}}  # fmt: skip
    result = inflation(leaking, honest)
    assert result["overall"]["uf1"] == pytest.approx(0.4)
    assert result["overall"]["accuracy"] == pytest.approx(0.0)
    assert result["per_dataset"]["samm"]["accuracy"] == pytest.approx(0.1)


def test_audit_three_protocols_and_resume(flow_root: Path, tmp_path: Path) -> None:
    engine = EpochEngine()
    out = tmp_path / "audit"
    result = run_audit(config(flow_root), out, k=3, engine=engine, progress=False)
    assert engine.folds == 6 + 3  # 6 LOSO folds, 3 k-fold folds
    protocols = result["protocols"]
    assert list(protocols) == ["loso", "oracle", "subject-mean", "subject-best", "kfold"]
    assert not protocols["loso"]["leaking"] and protocols["kfold"]["leaking"]
    # the oracle peeks and avoids the noisy last epoch: perfect, while honest LOSO is not
    assert protocols["oracle"]["overall"]["accuracy"] == 1.0
    assert protocols["loso"]["overall"]["accuracy"] < 0.9
    assert result["inflation"]["oracle"]["overall"]["accuracy"] == pytest.approx(
        1.0 - protocols["loso"]["overall"]["accuracy"]
    )
    assert set(protocols["oracle"]["chosen_epochs"]) == {
        "casme2_sub01", "casme2_sub02", "samm_006", "samm_007", "smic_s01", "smic_s02"
    }  # fmt: skip
    # epochs 1-3 are the same and perfect, the noised last one only on some subjects: the later
    # of the tied epochs is kept, as HTNet keeps it
    for fold, epoch in protocols["oracle"]["chosen_epochs"].items():
        curve = np.load(out / "loso_epochs" / f"{fold}.npy").argmax(-1)
        assert epoch == (EPOCHS if (curve[-1] == curve[0]).all() else EPOCHS - 1)
    assert set(protocols["oracle"]["chosen_epochs"].values()) == {EPOCHS - 1, EPOCHS}
    assert protocols["loso"]["overall"]["n"] == 24
    assert set(protocols["kfold"]["per_dataset"]) == {"casme2", "samm", "smic"}
    assert result["inflation"]["kfold"]["overall"]["uf1"] == pytest.approx(
        protocols["kfold"]["overall"]["uf1"] - protocols["loso"]["overall"]["uf1"]
    )
    # sample-level 3-fold over 6 subjects of 4 samples: every fold shares subjects
    leak = result["leakage"]
    assert leak["n_leaking_folds"] == 3 and leak["n_shared_subjects"] == 6
    assert json.loads((out / "audit.json").read_text()) == result
    md = (out / "audit.md").read_text()
    assert "| overall | oracle ⚠ | 24 |" in md and "3 of 3 folds put 6 subjects" in md
    page = check_page((out / "audit.html").read_text(encoding="utf-8"))
    assert "Subject overlap of the k-fold protocol" in " ".join(page.text)

    # rerun: every protocol's pooled predictions are on disk, nothing is trained again
    again = EpochEngine()
    assert run_audit(config(flow_root), out, k=3, engine=again, progress=False) == result
    assert again.folds == 0
    # k-fold predictions lost: only k-fold is retrained
    os.remove(out / "kfold" / "predictions.csv")
    partial = EpochEngine()
    run_audit(config(flow_root), out, k=3, engine=partial, progress=False)
    assert partial.folds == 0  # its per-fold curves are still saved


def test_audit_refuses_other_settings(flow_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    run_audit(config(flow_root), out, k=3, engine=EpochEngine(), progress=False)
    assert main_exit(["audit", "--data", "megc2019-flow", "--root", str(flow_root), "--out",
                      str(out), "--k", "2", "--epochs", str(EPOCHS), "--quiet"]) == 2  # fmt: skip


def main_exit(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


def test_audit_cli_prints_table_and_warning(
    flow_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(base, "default_engine", EpochEngine)
    out = tmp_path / "a"
    main(["audit", "--data", "megc2019-flow", "--root", str(flow_root), "--out", str(out),
          "--model", "cabm", "--epochs", str(EPOCHS), "--k", "3", "--quiet"])  # fmt: skip
    captured = capsys.readouterr()
    assert "deliberately runs leaking figures" in captured.err
    assert "kfold ⚠" in captured.out and "3 of 3 folds put 6 subjects" in captured.out
    assert (out / "audit.json").is_file() and (out / "audit.md").is_file()
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["kfold", "kfold_epochs", "loso", "loso_epochs", "oracle"]
    assert (out / "oracle" / "epochs.json").is_file()
    assert "subject-mean" in captured.out and "subject-best ⚠" in captured.out
    assert "ICIP 2024's scoring" in (out / "audit.md").read_text()


@pytest.mark.slow
def test_audit_end_to_end_with_real_engine(flow_root: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    out = tmp_path / "real"
    cfg = ExperimentConfig.from_dict(
        {
            "data": {"name": "megc2019-flow", "root": str(flow_root)},
            "recipe": {
                "model": "cabm",
                "epochs": 2,
                "batch_size": 8,
                "model_kwargs": {"dim": 8, "depth": 1, "kernel": 3, "patch": 4},
            },
        }  # fmt: skip
    )
    result = run_audit(cfg, out, k=2, progress=False)
    for name in ("loso", "oracle", "kfold"):
        assert 0.0 <= result["protocols"][name]["overall"]["accuracy"] <= 1.0
    assert len(list((out / "loso_epochs").glob("*.npy"))) == 6
    assert np.load(out / "loso_epochs" / "smic_s01.npy").shape == (2, 4, 3)


def test_audit_overwrite_retrains_and_foreign_folder_refused(
    flow_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "audit"
    run_audit(config(flow_root), out, k=3, engine=EpochEngine(), progress=False)
    engine = EpochEngine()
    run_audit(config(flow_root), out, k=2, engine=engine, overwrite=True, progress=False)
    assert engine.folds == 6 + 2
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a merkit audit folder"):
        run_audit(config(flow_root), foreign, k=3, engine=EpochEngine(), progress=False)
