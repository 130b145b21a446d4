"""The engine chosen from the registry, the ensemble engine, and the `recommended` recipe through
train, audit, fit, predict and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from flowdata import write_flow_dataset
from merkit.cli import main
from merkit.errors import ConfigError
from merkit.inference import load_checkpoint
from merkit.inference.export import OnnxBackend, export_onnx
from merkit.models import InputSpec, get_descriptor, list_models
from merkit.models.blocks import ProbabilityAverage
from merkit.training.average import AverageEngine, member_recipes, merge_members
from merkit.training.base import RegistryEngine, default_engine, engine_for
from merkit.training.closed_form import ClassicEngine
from merkit.training.config import ExperimentConfig
from merkit.training.engine import TorchEngine
from merkit.training.recipe import Recipe, default_recipe
from merkit.training.results import FoldResult
from preprocess_clips import face_clip
from test_classic import labelled_maps

pytestmark = pytest.mark.usefixtures("one_thread")

FOLDS = [(np.arange(10, 30), np.arange(10)), (np.arange(20), np.arange(20, 30))]


def run(argv: list[str]) -> int:
    """Exit code of `merkit argv` (0 when it returns normally)."""
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture
def flow_root(tmp_path: Path) -> Path:
    return write_flow_dataset(tmp_path / "megc")


# ---- which engine ------------------------------------------------------------------------------


def test_the_registry_entry_chooses_the_engine() -> None:
    engines = {name: type(engine_for(default_recipe(name))) for name in list_models()}
    assert engines["cabm"] is engines["ststnet"] is TorchEngine
    assert engines["hoof-svm"] is engines["map-svm"] is engines["lbptop-svm"] is ClassicEngine
    assert engines["recommended"] is AverageEngine
    assert isinstance(default_engine(), RegistryEngine)


def test_the_default_engine_hands_each_recipe_to_its_engine() -> None:
    x, y = labelled_maps(30)
    recipe = default_recipe("map-svm")
    through = default_engine().fit_predict(recipe, x, y, FOLDS, 3, 1, output="history")
    direct = ClassicEngine().fit_predict(recipe, x, y, FOLDS, 3, 1, output="history")
    for a, b in zip(through, direct, strict=True):
        np.testing.assert_array_equal(a.probs, b.probs)
    fitted = default_engine().fit(recipe, x, y, 3, 1)
    assert fitted.head.fitted


# ---- the ensemble ------------------------------------------------------------------------------


def test_recommended_is_cabm_map_svm_and_hoof_svm_on_flow_maps() -> None:
    entry = get_descriptor("recommended")
    assert entry.training == "average" and entry.members == ("cabm", "map-svm", "hoof-svm")
    assert "recommended" in list_models("maps")
    assert [r.model for r in member_recipes(default_recipe("recommended"))] == list(entry.members)
    assert member_recipes(default_recipe("recommended"))[0] == default_recipe("cabm")
    with pytest.raises(ValueError, match="an average names its members"):
        from merkit.models import register_model

        register_model("no-members", summary="", input=InputSpec(), training="average")


def test_ensemble_probabilities_are_the_mean_of_its_members_on_the_same_folds() -> None:
    x, y = labelled_maps(30)
    recipe, fold = default_recipe("recommended"), FOLDS[:1]
    calls: list[tuple[int, int]] = []
    (result,) = AverageEngine().fit_predict(
        recipe, x, y, fold, 3, 2, output="epochs", progress=lambda d, t: calls.append((d, t))
    )
    members = [engine_for(m).fit_predict(m, x, y, fold, 3, 2)[0] for m in member_recipes(recipe)]
    # cabm's curve (epochs, n, K) and each SVM's single answer, which counts at every epoch
    assert result.shape == (default_recipe("cabm").epochs, 10, 3)
    np.testing.assert_allclose(result[-1], np.mean(members, axis=0), atol=1e-6)
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1][0] == calls[-1][1]  # one count over the members


def test_ensemble_history_names_each_curve_by_its_member() -> None:
    """FoldResults of the members are merged: mean probabilities, curves named by member."""
    parts = [
        [FoldResult(np.array([[1.0, 0.0]]), {"train_loss": [0.5, 0.4]})],
        [np.array([[0.0, 1.0]])],
    ]
    members = [default_recipe("cabm"), default_recipe("map-svm")]
    (merged,) = merge_members(members, parts, "history")
    np.testing.assert_array_equal(merged.probs, [[0.5, 0.5]])
    assert merged.history == {"cabm train_loss": [0.5, 0.4]}


def test_an_ensemble_recipe_sets_nothing_its_members_would_not_see() -> None:
    x, y = labelled_maps(12)
    for recipe in (
        Recipe.from_dict({**default_recipe("recommended").to_dict(), "epochs": 5}),
        Recipe.from_dict({**default_recipe("recommended").to_dict(), "model_kwargs": {"a": 1}}),
    ):
        with pytest.raises(ConfigError, match="cannot be set on an average"):
            AverageEngine().fit_predict(recipe, x, y, FOLDS[:1], 3)
    with pytest.raises(ConfigError, match="'cabm' is not an average"):
        AverageEngine().fit(default_recipe("cabm"), x, y, 3)


@pytest.mark.slow
def test_fitted_recommended_saves_reloads_and_exports_whole(tmp_path: Path) -> None:
    from inference_fixtures import make_meta
    from merkit.inference.checkpoint import save_checkpoint
    from merkit.preprocess.pipeline import PrepareConfig

    x, y = labelled_maps(30)
    net = AverageEngine().fit(default_recipe("recommended"), x[:20], y[:20], 3)
    assert isinstance(net, ProbabilityAverage) and len(net.members) == 3
    meta = make_meta("recommended", {}, PrepareConfig(flow="farneback"), in_chans=3)
    save_checkpoint(tmp_path / "m.pt", net, meta)
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    held_out = torch.from_numpy(x[20:])
    with torch.no_grad():
        expected = net(held_out).softmax(-1)
        assert torch.equal(loaded(held_out).softmax(-1), expected)
        members = torch.stack([m(held_out).softmax(-1) for m in net.members]).mean(0)
    torch.testing.assert_close(expected, members)
    backend = OnnxBackend(export_onnx(net, meta, tmp_path / "m.onnx"))
    np.testing.assert_allclose(backend.probabilities(x[20:]), expected.numpy(), atol=1e-5)


# ---- through the command line ------------------------------------------------------------------


def test_a_config_naming_no_model_trains_the_recommended_recipe() -> None:
    config = ExperimentConfig.from_dict({"data": {"name": "megc2019-flow", "root": "x"}})
    assert config.recipe == default_recipe("recommended")
    assert config.prepare.output == "maps" and config.prepare.size == 28


@pytest.mark.slow
def test_train_without_a_model_runs_the_recommended_recipe(
    flow_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real engines on 24 maps: cabm's 40 epochs on 6 folds side by side, two SVMs."""
    out = tmp_path / "run"
    assert run(["train", "--data", "megc2019-flow", "--root", str(flow_root), "--out", str(out),
                "--quiet"]) == 0  # fmt: skip
    config = yaml.safe_load((out / "config.yaml").read_text())["config"]
    assert config["recipe"]["model"] == "recommended"
    curves = sorted((out / "folds" / "seed0").glob("*.curves.json"))
    assert len(curves) == 6
    assert set(json.loads(curves[0].read_text())) == {"cabm train_loss", "cabm train_accuracy"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["n"] == 24


@pytest.mark.parametrize("model", ["hoof-svm", "map-svm"])
def test_train_and_audit_a_classic_model(flow_root: Path, tmp_path: Path, model: str) -> None:
    out = tmp_path / model
    argv = ["--data", "megc2019-flow", "--root", str(flow_root), "--model", model, "--quiet"]
    assert run(["train", "--out", str(out), *argv]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["n"] == 24 and 0 <= metrics["overall"]["uf1"] <= 1
    assert run(["audit", "--out", str(tmp_path / "audit"), "--k", "3", *argv]) == 0
    audit = json.loads((tmp_path / "audit" / "audit.json").read_text())
    loso, oracle = (audit["protocols"][p]["overall"]["uf1"] for p in ("loso", "oracle"))
    assert loso == oracle  # no epochs to peek at
    with pytest.raises(SystemExit) as info:
        main(["train", "--out", str(tmp_path / "e"), *argv, "--epochs", "3"])
    assert info.value.code == 2


@pytest.mark.slow
def test_fit_predict_and_export_the_recommended_recipe(flow_root: Path, tmp_path: Path) -> None:
    clip = face_clip(tmp_path / "astronaut", count=6, apex=3, peak=3.0).path
    model = tmp_path / "final.pt"
    argv = ["fit", "--data", "megc2019-flow", "--root", str(flow_root), "--out", str(model),
            "--quiet"]  # fmt: skip
    assert run(argv) == 0
    net, meta = load_checkpoint(model)
    assert meta.model == "recommended" and isinstance(net, ProbabilityAverage)
    assert all(m.head.fitted for m in net.members[1:])
    out = tmp_path / "result.json"
    assert run(["predict", str(model), str(clip), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    onnx_path = tmp_path / "final.onnx"
    assert run(["export", str(model), "--onnx", str(onnx_path)]) == 0
    out_onnx = tmp_path / "onnx.json"
    assert run(["predict", str(onnx_path), str(clip), "--json", str(out_onnx)]) == 0
    from_onnx = json.loads(out_onnx.read_text())
    for name, p in result["probabilities"].items():
        assert from_onnx["probabilities"][name] == pytest.approx(p, abs=1e-4)
