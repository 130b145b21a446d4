"""Hostile model files: checkpoints asking for too much, NaN weights or answers, exported models
whose metadata lies, folds with an odd one out, stray files among weights. Each is refused in
one sentence naming the file, exit 2, before anything is allocated or written."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cli_helpers import run as cli
from cli_helpers import widen_consoles
from flowdata import SUBJECTS, write_flow_dataset
from inference_fixtures import make_meta, untrained_checkpoint
from merkit.errors import ConfigError
from merkit.inference import Predictor
from merkit.inference.checkpoint import (
    MAX_MODEL_BYTES,
    CheckpointMeta,
    _forward_bytes,
    estimated_bytes,
    load_checkpoint,
    meta_member,
    save_checkpoint,
)
from merkit.inference.export import META_KEY
from merkit.inference.importing import import_weights
from merkit.models import create_model
from merkit.models.registry import get_descriptor, list_models
from merkit.preprocess.pipeline import PrepareConfig
from merkit.training.recipe import default_recipe, recipe_presets
from preprocess_clips import face_clip
from test_import_weights import published_state

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)


def one_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def tampered(path: Path, **changes: object) -> Path:
    """A small real cabm checkpoint whose metadata then says `changes`."""
    untrained_checkpoint(path)
    payload = torch.load(path, weights_only=True)
    payload["meta"] = json.dumps({**json.loads(payload["meta"]), **changes})
    torch.save(payload, path)
    return path


def with_weights(path: Path, change) -> Path:  # noqa: ANN001  (a function of a tensor)
    """A small real cabm checkpoint whose floating-point weights went through `change`."""
    net, meta = untrained_checkpoint(path)
    with torch.no_grad():
        for value in net.state_dict().values():
            if value.is_floating_point():
                value.copy_(change(value))
    save_checkpoint(path, net, meta)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine aligned face frames with a small movement (numbered 10..18, apex 15)."""
    return face_clip(tmp_path_factory.mktemp("clip") / "clip", count=9, apex=5).path


# ---- what a checkpoint may ask to build ------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_kwargs": {"dim": 100000, "depth": 2}}, "would need about"),
        (
            {"ensemble": 100000},
            "an average of 100000 seed members, needs 4100000 weight tensors, the file holds 41",
        ),
        ({"model_kwargs": {"dim": -4}}, "with model_kwargs {'dim': -4} cannot be built"),
    ],
)
def test_metadata_asking_for_too_much_is_refused_before_building(
    tmp_path: Path, capsys, clip: Path, changes: dict, message: str
) -> None:
    path = tampered(tmp_path / "big.pt", **changes)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="big.pt: ") as info:
        load_checkpoint(path)
    assert message in str(info.value) and time.perf_counter() - started < 10
    code, out, err = cli(["predict", str(path), str(clip), "--aligned"], capsys)
    assert code == 2 and "big.pt: " in one_error(err) and message in err and out == ""


def test_every_shipped_model_fits_the_bound_with_room_to_spare() -> None:
    """The bound is derived from what merkit builds: its costliest preset (HTNet's authors'
    sizes, 140 M weights) needs under a third of it, so no real checkpoint is refused."""
    costs = {}
    for name in list_models():
        for preset in recipe_presets(name):
            recipe = default_recipe(name, preset)
            config = PrepareConfig(**get_descriptor(name).prepare_keys(preset))
            meta = dataclasses.replace(
                make_meta(name, recipe.model_kwargs, config),
                in_chans=get_descriptor(name).input.in_chans,
            )
            costs[name, preset] = estimated_bytes(meta, meta_member(meta, name))
    assert max(costs.values()) < MAX_MODEL_BYTES / 3, costs
    assert costs["htnet", "paper"] > 139e6 * 4  # its weights are counted


def test_forward_bytes_counts_activations_on_the_meta_device() -> None:
    with torch.device("meta"):
        member = create_model("cabm", 3, 3, dim=64, depth=1, patch=1)
    small = _forward_bytes(member, (1, 3, 28, 28))
    large = _forward_bytes(member, (1, 3, 56, 56))
    assert small >= 64 * 28 * 28 * 4 and large == pytest.approx(4 * small, rel=0.05)


# ---- no NaN is a result ----------------------------------------------------------------------


def test_nan_weights_are_refused_at_import(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(published_state(0), folder / "s01.pth")
    poisoned = published_state(1)
    poisoned["fc.weight"][0, 0] = float("nan")
    torch.save(poisoned, folder / "s02.pth")
    code, _, err = cli(["import", "ststnet", str(folder), "--out", str(tmp_path / "folds")], capsys)
    line = one_error(err)
    assert code == 2 and "s02.pth: the weights hold NaN or infinite values (tensor" in line
    assert not (tmp_path / "folds").exists()


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_nan_weights_are_refused_at_load(tmp_path: Path, capsys, clip: Path, poison) -> None:
    path = with_weights(tmp_path / "m.pt", lambda v: torch.full_like(v, poison))
    code, out, err = cli(["predict", str(path), str(clip), "--aligned"], capsys)
    assert code == 2 and "m.pt: the weights hold NaN or infinite values" in one_error(err)
    assert out == ""
    code, _, err = cli(["export", str(path), "--onnx", str(tmp_path / "m.onnx")], capsys)
    assert code == 2 and "NaN" in one_error(err) and not (tmp_path / "m.onnx").exists()


def test_finite_weights_answering_nan_are_no_class(tmp_path: Path, capsys, clip: Path) -> None:
    """Weights at the float limit overflow to inf - inf = NaN: said, not reported as a class."""
    path = with_weights(tmp_path / "huge.pt", lambda v: torch.full_like(v, 3e38))
    out_file = tmp_path / "result.json"
    code, _, err = cli(
        ["predict", str(path), str(clip), "--aligned", "--json", str(out_file)], capsys
    )
    assert code == 2 and "Traceback" not in err
    assert "huge.pt: the model answered NaN or infinite probabilities for" in err
    result = json.loads(out_file.read_text())
    assert "probabilities" not in result and "NaN" in result["error"]


def test_evaluate_refuses_a_fold_answering_nan(tmp_path: Path, capsys) -> None:
    root = write_flow_dataset(tmp_path / "data")
    weights = tmp_path / "weights"
    weights.mkdir()
    for i, (_, _, subject, _) in enumerate(SUBJECTS):
        state = published_state(i)
        if subject == "s01":
            state = {k: v.fill_(3e38) if v.is_floating_point() else v for k, v in state.items()}
        torch.save(state, weights / f"{subject}.pth")
    folds, run = tmp_path / "folds", tmp_path / "run"
    import_weights("ststnet", weights, folds)
    args = ["evaluate", str(folds), "--data", "megc2019-flow", "--root", str(root), "--quiet"]
    code, out, err = cli([*args, "--out", str(run)], capsys)
    line = one_error(err)
    assert code == 2 and "s01.pt: the model answered NaN or infinite probabilities" in line
    assert "subject s01" in line and "nan" not in out.lower()
    assert not (run / "predictions.csv").exists() and not (run / "metrics.json").exists()


# ---- wrong blame -----------------------------------------------------------------------------


def onnx_model(path: Path, outputs: int, meta: CheckpointMeta, value: float = 1.0) -> Path:
    """A hand-made ONNX graph (flatten, one matrix of `value`) giving `outputs` scores,
    carrying `meta`."""
    helper = onnx.helper
    matrix = np.full((3 * 28 * 28, outputs), value, np.float32)
    weight = onnx.numpy_helper.from_array(matrix, "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 3, 28, 28])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", outputs])],
        [weight],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    helper.set_model_props(proto, {META_KEY: json.dumps(meta.to_dict())})
    onnx.save(proto, str(path))
    return path


def test_onnx_metadata_naming_fewer_classes_than_outputs_is_blamed(
    tmp_path: Path, capsys, clip: Path
) -> None:
    meta = make_meta("ststnet")  # three classes
    assert Predictor.load(onnx_model(tmp_path / "fits.onnx", 3, meta)).meta == meta
    path = onnx_model(tmp_path / "m.onnx", 5, meta)
    with pytest.raises(ConfigError, match="m.onnx: the model gives 5 class scores, its metadata"):
        Predictor.load(path)
    code, out, err = cli(["predict", str(path), str(clip), "--aligned"], capsys)
    line = one_error(err)
    assert code == 2 and "names 3 classes (happiness, surprise, disgust)" in line and out == ""
    wrong_input = dataclasses.replace(meta, in_chans=2)
    with pytest.raises(ConfigError, match=r"takes inputs of shape \(N, 3, 28, 28\), its metadata"):
        Predictor.load(onnx_model(tmp_path / "chans.onnx", 3, wrong_input))
    with pytest.raises(ConfigError, match="nan.onnx: the weights hold NaN or infinite values"):
        Predictor.load(onnx_model(tmp_path / "nan.onnx", 3, meta, float("nan")))


def test_the_odd_fold_out_is_the_one_blamed(tmp_path: Path, capsys) -> None:
    root = write_flow_dataset(tmp_path / "data")
    weights = tmp_path / "weights"
    weights.mkdir()
    for i, (_, _, subject, _) in enumerate(SUBJECTS):
        torch.save(published_state(i), weights / f"{subject}.pth")
    folds = tmp_path / "folds"
    import_weights("ststnet", weights, folds)
    meta = load_checkpoint(folds / "006.pt")[1]  # the first subject in sorted order
    odd = dataclasses.replace(meta, model="cabm", model_kwargs={"dim": 8, "depth": 1})
    net = create_model("cabm", 3, 3, dim=8, depth=1)
    save_checkpoint(folds / "006.pt", net, dataclasses.replace(odd, input_convention={}))
    args = ["evaluate", str(folds), "--data", "megc2019-flow", "--root", str(root), "--quiet"]
    code, _, err = cli([*args, "--out", str(tmp_path / "run")], capsys)
    line = one_error(err)
    assert code == 2 and "006.pt: its model differs from that of 5 of the other 5 folds" in line
    assert not (tmp_path / "run").exists()


def test_a_text_file_among_weights_is_not_called_code(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(published_state(0), folder / "s01.pth")
    (folder / "s02.pth").write_text("not pt\n")  # 7 bytes
    code, _, err = cli(["import", "ststnet", str(folder), "--out", str(tmp_path / "folds")], capsys)
    line = one_error(err)
    assert code == 2 and "s02.pth: not a PyTorch weights file (7 bytes" in line
    assert "code" not in line and not (tmp_path / "folds").exists()
