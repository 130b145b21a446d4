from __future__ import annotations

import csv
import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from flowdata import CentroidEngine, write_flow_dataset
from merkit.errors import ConfigError
from merkit.evaluation.metrics import pooled_metrics
from merkit.evaluation.predictions import read_predictions
from merkit.evaluation.splitters import SubjectLeakageWarning
from merkit.io import write_yaml_atomic
from merkit.models import registry as model_registry
from merkit.models.inputs import model_input
from merkit.models.registry import InputSpec, get_descriptor
from merkit.training.config import ExperimentConfig, build_experiment
from merkit.training.data import TrainingData, training_input
from merkit.training.runner import fold_tasks, run_experiment
from test_splitters import FixedSplitter

CLASSES = ["negative", "positive", "surprise"]


@pytest.fixture
def flow_root(tmp_path: Path) -> Path:
    return write_flow_dataset(tmp_path / "megc")


def probabilities(path: Path) -> np.ndarray:
    """A run's saved probabilities, in CLASSES order."""
    return read_predictions(path).probabilities_for(CLASSES)


def make_config(root: Path, **overrides) -> ExperimentConfig:
    data = {
        "data": {"name": "megc2019-flow", "root": str(root)},
        "recipe": {"model": "cabm", "epochs": 1},
    }
    data.update(overrides)
    return ExperimentConfig.from_dict(data)


def test_run_folder_holds_every_output(flow_root: Path, tmp_path: Path) -> None:
    engine = CentroidEngine()
    out = tmp_path / "run"
    result = run_experiment(make_config(flow_root), out, engine=engine, progress=False)

    assert result.folds_computed == 6 and result.folds_loaded == 0 and result.n_samples == 24
    assert sorted(p.stem for p in (out / "folds" / "seed0").glob("*.csv")) == sorted(
        ["casme2_sub01", "casme2_sub02", "samm_006", "samm_007", "smic_s01", "smic_s02"]
    )
    meta = yaml.safe_load((out / "config.yaml").read_text())
    assert meta["data"]["fingerprint"] and meta["data"]["n_used"] == 24
    assert meta["protocol"]["description"] == "loso" and meta["protocol"]["leaking_subjects"] == []
    assert set(meta["versions"]) == {"python", "torch", "numpy", "merkit"}
    assert meta["run"]["finished_at"] and "git_commit" in meta
    assert build_experiment(out / "config.yaml").identity() == make_config(flow_root).identity()

    with (out / "predictions.csv").open() as handle:
        header = next(csv.reader(handle))
    assert header == [
        "dataset",
        "subject",
        "sample",
        "true",
        "predicted",
        *(f"p_{c}" for c in CLASSES),
    ]
    table = read_predictions(out / "predictions.csv")
    assert len(table) == 24 and table.subject[0] == "sub01"
    probs = probabilities(out / "predictions.csv")
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)

    t, p = table.encode(CLASSES)
    expected = pooled_metrics(t, p, CLASSES, table.dataset)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["uf1"] == pytest.approx(expected["overall"]["uf1"])
    assert metrics["overall"]["uf1"] > 0.9  # class-coloured maps: the centroid engine is right
    assert set(metrics["per_dataset"]) == {"casme2", "samm", "smic"}
    assert metrics["per_subject"]["samm/006"]["n"] == 4
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "| overall | 24 |" in report and "samm/007" in report and "subject-independent" in report


def test_engine_never_sees_test_subject_in_training(flow_root: Path, tmp_path: Path) -> None:
    seen = []

    class Watching(CentroidEngine):
        def fit_predict(self, recipe, x, y, folds, *args, groups=None, **kwargs):
            for train, test in folds:
                seen.append(set(groups[train]) & set(groups[test]))
            return super().fit_predict(recipe, x, y, folds, *args, groups=groups, **kwargs)

    run_experiment(make_config(flow_root), tmp_path / "run", engine=Watching(), progress=False)
    assert len(seen) == 6 and all(not shared for shared in seen)


def test_a_protocol_fold_the_engine_cannot_train_is_one_user_error(flow_root: Path) -> None:
    """The runner names the protocol and the fold; the engine's own check is for callers of
    its API (a ValueError, a programming error), never what a user sees."""
    data = TrainingData.from_config(make_config(flow_root), progress=False)
    everything = list(range(len(data.samples)))
    with pytest.raises(ConfigError, match="fixed: fold fold000 leaves no sample to train on"):
        fold_tasks(data, FixedSplitter([([], everything)]), seed=0)
    overlapping = [(everything[:12], everything[:12]), (everything[:12], everything[12:])]
    with pytest.raises(ConfigError, match="fold000 puts a sample in both its training and"):
        fold_tasks(data, FixedSplitter(overlapping), seed=0)


def test_rerun_resumes_without_recomputing(flow_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = run_experiment(make_config(flow_root), out, engine=CentroidEngine(), progress=False)
    again = CentroidEngine()
    second = run_experiment(make_config(flow_root), out, engine=again, progress=False)
    assert again.calls == 0 and second.folds_loaded == 6 and second.folds_computed == 0
    assert second.metrics["overall"] == first.metrics["overall"]

    (out / "folds" / "seed0" / "samm_007.csv").unlink()
    third = CentroidEngine()
    run_experiment(make_config(flow_root), out, engine=third, progress=False)
    assert third.folds == 1


@pytest.mark.usefixtures("one_thread")
def test_training_curves_reach_the_report_and_survive_a_resume(
    flow_root: Path, tmp_path: Path
) -> None:
    """The real engine records per-epoch loss/accuracy per fold; the run averages them."""
    out = tmp_path / "run"
    recipe = {"model": "cabm", "epochs": 4, "batch_size": 8, "val_subjects": 1}
    config = make_config(flow_root, recipe=recipe)
    run_experiment(config, out, progress=False)

    curves = json.loads((out / "curves.json").read_text())
    assert sorted(curves) == ["train_accuracy", "train_loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 4 for v in curves.values())
    assert curves["train_loss"][-1] < curves["train_loss"][0]  # it learns the coloured maps
    assert all(0 <= a <= 1 for a in curves["train_accuracy"] + curves["val_accuracy"])
    folds = sorted((out / "folds" / "seed0").glob("*.curves.json"))
    assert len(folds) == 6
    fold_losses = [json.loads(f.read_text())["train_loss"] for f in folds]
    assert np.allclose(np.mean(fold_losses, axis=0), curves["train_loss"])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Training curves" in (out / "report.md").read_text()

    (out / "folds" / "seed0" / "samm_007.csv").unlink()  # one fold to redo, five loaded
    engine = CentroidEngine()  # keeps no history: the loaded folds' curves carry the mean
    run_experiment(config, out, engine=engine, progress=False)
    assert engine.folds == 1
    assert not (out / "folds" / "seed0" / "samm_007.curves.json").exists()  # none stale
    others = [loss for f, loss in zip(folds, fold_losses, strict=True) if "samm_007" not in f.name]
    kept = json.loads((out / "curves.json").read_text())
    assert np.allclose(kept["train_loss"], np.mean(others, axis=0))


def test_interrupted_run_keeps_finished_folds(flow_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = make_config(flow_root, recipe={"model": "cabm", "epochs": 1, "folds_per_batch": 2})
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, out, engine=CentroidEngine(fail_after=2), progress=False)
    assert len(list((out / "folds" / "seed0").glob("*.csv"))) == 4
    assert not (out / "predictions.csv").exists()
    engine = CentroidEngine()
    result = run_experiment(config, out, engine=engine, progress=False)
    assert engine.calls == 1 and engine.folds == 2 and result.folds_loaded == 4


def test_different_config_is_refused_unless_overwrite(flow_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_experiment(make_config(flow_root), out, engine=CentroidEngine(), progress=False)
    changed = make_config(flow_root, recipe={"model": "cabm", "epochs": 2})
    with pytest.raises(ConfigError, match=r"different config \(recipe\.epochs differ"):
        run_experiment(changed, out, engine=CentroidEngine(), progress=False)
    # runtime-only keys do not make a different run
    faster = make_config(flow_root, workers=2)
    assert run_experiment(faster, out, engine=CentroidEngine(), progress=False).folds_computed == 0
    engine = CentroidEngine()
    run_experiment(changed, out, engine=engine, overwrite=True, progress=False)
    assert engine.folds == 6
    assert yaml.safe_load((out / "config.yaml").read_text())["config"]["recipe"]["epochs"] == 2


def test_foreign_folder_is_refused(flow_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a merkit run folder"):
        run_experiment(make_config(flow_root), out, engine=CentroidEngine(), progress=False)


def test_multi_seed_reports_each_seed_and_mean_std(flow_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    engine = CentroidEngine(noise=15.0)
    result = run_experiment(
        make_config(flow_root, seeds=[0, 1, 2]), out, engine=engine, progress=False
    )
    assert engine.folds == 18
    uf1s = []
    for seed in (0, 1, 2):
        table = read_predictions(out / f"predictions_seed{seed}.csv")
        t, p = table.encode(CLASSES)
        uf1s.append(pooled_metrics(t, p, CLASSES)["overall"]["uf1"])
        assert result.metrics["seeds"][str(seed)]["overall"]["uf1"] == pytest.approx(uf1s[-1])
    assert len(set(uf1s)) > 1  # the seeds really differ
    stats = result.metrics["seed_statistics"]
    assert stats["n_seeds"] == 3
    assert stats["overall"]["uf1"]["mean"] == pytest.approx(np.mean(uf1s))
    assert stats["overall"]["uf1"]["std"] == pytest.approx(np.std(uf1s, ddof=1))
    # predictions.csv: probabilities averaged over the seeds
    mean = np.mean([probabilities(out / f"predictions_seed{s}.csv") for s in (0, 1, 2)], axis=0)
    assert np.allclose(probabilities(out / "predictions.csv"), mean, atol=2e-6)
    assert "mean ± std" in (out / "report.md").read_text()


def test_extra_recipes_average_probabilities(flow_root: Path, tmp_path: Path) -> None:
    class Fixed:
        def fit_predict(self, recipe, x, y, folds, *args, **kwargs):
            fixed = {"cabm": [0.6, 0.3, 0.1], "ststnet": [0.0, 0.5, 0.5]}[recipe.model]
            return [np.tile(fixed, (len(test), 1)) for _, test in folds]

    config = make_config(flow_root, extra_recipes=[{"model": "ststnet", "epochs": 1}])
    out = tmp_path / "run"
    run_experiment(config, out, engine=Fixed(), progress=False)
    probs = probabilities(out / "predictions.csv")
    assert np.allclose(probs, [0.3, 0.4, 0.3])
    assert set(read_predictions(out / "predictions.csv").predicted) == {"positive"}


def test_sample_kfold_runs_only_when_asked_and_reports_leakage(
    flow_root: Path, tmp_path: Path
) -> None:
    protocol = {"name": "kfold", "options": {"n_splits": 3}}
    with pytest.raises(ConfigError, match="allow-leakage"):
        run_experiment(
            make_config(flow_root, protocol=protocol), tmp_path / "a", engine=CentroidEngine()
        )
    config = make_config(flow_root, protocol={**protocol, "allow_leakage": True})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_experiment(config, tmp_path / "b", engine=CentroidEngine(), progress=False)
    assert any(issubclass(w.category, SubjectLeakageWarning) for w in caught)
    meta = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    assert len(meta["protocol"]["leaking_subjects"]) == 6
    report = (tmp_path / "b" / "report.md").read_text()
    assert "subject leakage" in report and "6 subjects appear in both train and test" in report


# ---- config ----------------------------------------------------------------------------------


def test_config_unknown_keys_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'dataa'"):
        ExperimentConfig.from_dict({"dataa": {}})
    with pytest.raises(ConfigError, match=r"recipe: unknown key 'epoch'"):
        ExperimentConfig.from_dict({"recipe": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"prepare: unknown key 'sise'"):
        ExperimentConfig.from_dict({"prepare": {"sise": 3}})
    with pytest.raises(ConfigError, match=r"recipe\.augment: unknown key 'flip'"):
        ExperimentConfig.from_dict({"recipe": {"augment": {"flip": True}}})
    with pytest.raises(ConfigError, match=r"recipe\.epochs: expected int"):
        ExperimentConfig.from_dict({"recipe": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match="sam must be >= 0, got -0.1"):
        ExperimentConfig.from_dict({"recipe": {"sam": -0.1}})
    with pytest.raises(ConfigError, match=r"augment\.erase must be between 0 and 1, got 1.5"):
        ExperimentConfig.from_dict({"recipe": {"augment": {"erase": 1.5}}})
    with pytest.raises(ConfigError, match=r"augment\.max_shift must be >= 0, got -1"):
        ExperimentConfig.from_dict({"recipe": {"augment": {"max_shift": -1}}})
    with pytest.raises(ConfigError, match=r"augment\.u_scaling must be one of minmax, signed"):
        ExperimentConfig.from_dict({"recipe": {"augment": {"u_scaling": "foo"}}})
    path = tmp_path / "bad.yaml"
    path.write_text("seeds: [0, 0]\n")
    with pytest.raises(ConfigError, match="repeats a seed"):
        build_experiment(path)


def test_config_yaml_round_trip(tmp_path: Path) -> None:
    config = ExperimentConfig.from_dict(
        {
            "data": {"name": "casme2", "root": "/data/casme2", "taxonomy": "5class"},
            "prepare": {"size": 32, "magnify_band": [0.1, 0.3]},
            "protocol": {"name": "group-kfold", "options": {"n_splits": 5}},
            "recipe": {"model": "cabm", "epochs": 7, "lr": 1},
            "seeds": [1, 2],
        }
    )
    assert config.recipe.lr == 1.0 and config.prepare.magnify_band == (0.1, 0.3)
    path = tmp_path / "exp.yaml"
    write_yaml_atomic(path, config.to_dict())
    assert build_experiment(path) == config


def test_prepare_follows_the_model_input(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = InputSpec("sequence", 1, (64, 64), frames=8)
    toy = dataclasses.replace(get_descriptor("c3dgru"), name="toyseq", input=spec)
    monkeypatch.setitem(model_registry._MODELS, "toyseq", toy)
    flow = ExperimentConfig.from_dict({"recipe": {"model": "cabm"}})
    assert flow.prepare.output == "maps" and flow.prepare.size == 28
    seq = ExperimentConfig.from_dict({"recipe": {"model": "toyseq"}})
    assert (seq.prepare.output, seq.prepare.size, seq.prepare.frames) == ("sequence", 64, 8)
    own = ExperimentConfig.from_dict({"recipe": {"model": "toyseq"}, "prepare": {"frames": 4}})
    assert own.prepare.frames == 4
    mixed = {"recipe": {"model": "cabm"}, "extra_recipes": [{"model": "toyseq"}]}
    with pytest.raises(ConfigError, match="other input"):
        ExperimentConfig.from_dict(mixed)
    with pytest.raises(ConfigError, match="unknown model 'cabn'"):
        ExperimentConfig.from_dict({"recipe": {"model": "cabn"}})


def test_model_input_packs_sequences() -> None:
    x = np.arange(2 * 3 * 1 * 4 * 4, dtype=np.float64).reshape(2, 3, 1, 4, 4)
    packed = model_input(x)
    assert packed.shape == (2, 3, 4, 4)
    assert np.array_equal(packed[1, 2], x[1, 2, 0])
    assert model_input(np.zeros((2, 3, 28, 28))).shape == (2, 3, 28, 28)


def test_training_input_is_checked_float32() -> None:
    config = ExperimentConfig.from_dict({"recipe": {"model": "cabm"}})
    x = training_input(config, np.zeros((2, 3, 28, 28), dtype=np.float64))
    assert x.shape == (2, 3, 28, 28) and x.dtype == np.float32
    with pytest.raises(ValueError, match=r"expected \(3, 28, 28\)"):
        training_input(config, np.zeros((2, 5, 1, 28, 28)))  # a sequence for a flow model


@pytest.mark.shared_data
def test_real_megc2019_maps_run_under_loso(megc2019_root: Path, tmp_path: Path) -> None:
    """The 380 real maps through loader, preparation, 58 LOSO folds and the report."""
    engine = CentroidEngine()
    result = run_experiment(
        make_config(megc2019_root), tmp_path / "run", engine=engine, progress=False
    )
    assert result.n_samples == 380 and result.n_folds == 58 and engine.folds == 58
    metrics = result.metrics
    assert set(metrics["per_dataset"]) == {"casme2", "samm", "smic"}
    assert len(metrics["per_subject"]) == 58 and metrics["overall"]["n"] == 380
    assert 0.2 < metrics["overall"]["uf1"] < 0.9


@pytest.mark.parametrize(
    ("models", "calls"), [(["cabm"], 1), (["convat"], 6), (["convat", "cabm"], 1)]
)
def test_models_trained_one_fold_at_a_time_save_every_fold_as_it_finishes(
    flow_root: Path, tmp_path: Path, models: list[str], calls: int
) -> None:
    """Folds are handed over in batches only when some model can train them side by side;
    otherwise one call per fold, so an interrupted run keeps every fold it finished."""
    first, *extra = ({"model": m, "epochs": 1} for m in models)
    config = make_config(flow_root, recipe=first, extra_recipes=extra)
    engine = CentroidEngine()
    run_experiment(config, tmp_path / "run", engine=engine, progress=False)
    assert engine.calls == calls * len(models) and engine.folds == 6 * len(models)
