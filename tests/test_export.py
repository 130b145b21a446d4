"""ONNX export: same probabilities as PyTorch, metadata travels in the file, predict runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from inference_fixtures import untrained_checkpoint
from merkit.errors import ConfigError
from merkit.inference import Predictor, export_onnx, read_onnx_meta
from merkit.inference.export import OnnxBackend
from merkit.models.inputs import inference_input
from merkit.preprocess.pipeline import PrepareConfig
from preprocess_clips import face_clip
from torch_threads import torch_threads

pytestmark = pytest.mark.usefixtures("one_thread")


def _real_shaped_maps(count: int = 4) -> np.ndarray:
    """u/v/strain-like maps in 0..1: smooth blobs, like min-max scaled flow (4, 3, 28, 28)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:28, 0:28] / 27.0
    maps = []
    for _ in range(count):
        cx, cy, s = rng.uniform(0.2, 0.8, size=3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.05 + 0.1 * s))
        maps.append(np.stack([blob, 1 - blob, blob**2]) + 0.05 * rng.random((3, 28, 28)))
    return np.clip(np.stack(maps), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Each model exported once (the dynamo exporter takes seconds): (net, meta, .pt, .onnx)."""
    folder = tmp_path_factory.mktemp("exported")
    out = {}
    with torch_threads(1):
        for model in ("cabm", "ststnet", "offapexnet"):
            pt = folder / f"{model}.pt"
            net, meta = untrained_checkpoint(pt, model, PrepareConfig(flow="farneback"), seed=1)
            out[model] = (net, meta, pt, export_onnx(net, meta, folder / f"{model}.onnx"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cabm", "ststnet", "offapexnet"])
def test_onnxruntime_matches_pytorch(exported: dict[str, tuple], model: str) -> None:
    net, meta, _, path = exported[model]
    x = _real_shaped_maps(4)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).softmax(-1).numpy()
    backend = OnnxBackend(path)
    np.testing.assert_allclose(backend.probabilities(x), expected, atol=1e-4)
    np.testing.assert_allclose(backend.probabilities(x[:1]), expected[:1], atol=1e-4)  # batch 1

    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic axis
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["class_names"]) == list(meta.class_names)
    assert json.loads(props["input_spec"])["size"] == [28, 28]
    assert json.loads(props["prepare_config"])["flow"] == "farneback"
    assert read_onnx_meta(path) == meta


# The family's models on their declared inputs: (prepare config, 4-D channels as the model sees
# them, prepared arrays of two samples -- grey frames for the sequence models, MOL's targets zero).
SEQUENCE = PrepareConfig(output="sequence", size=64, frames=8)
FAMILY = {
    "convat": (PrepareConfig(flow="farneback"), 3, None),
    "c3dgru": (SEQUENCE, 8, None),
    "icip24": (SEQUENCE, 8, {"frame_channels": 1, "size": 64, "filters": 8, "hidden": 16}),
    "mol": (  # 4 frames of 40 px: its per-pair blocks make a long graph to export
        PrepareConfig(output="sequence", size=40, frames=4),
        4 * 4,
        {"crop": 32, "dim": 32, "flow_width": 0.0625},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(FAMILY))
def test_family_models_export_with_parity(model: str, tmp_path: Path) -> None:
    config, in_chans, kwargs = FAMILY[model]
    with torch_threads(1):
        net, meta = untrained_checkpoint(tmp_path / "m.pt", model, config, 2, in_chans, kwargs)
        path = export_onnx(net, meta, tmp_path / f"{model}.onnx")
    rng = np.random.default_rng(1)
    prepared = (
        _real_shaped_maps(3)
        if config.output == "maps"
        else rng.random((3, *config.item_shape), dtype=np.float32)
    )
    x = inference_input(model, prepared)
    assert x.shape == (3, in_chans, config.size, x.shape[-1])
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).softmax(-1).numpy()
    backend = OnnxBackend(path)
    np.testing.assert_allclose(backend.probabilities(x), expected, atol=1e-4)
    np.testing.assert_allclose(backend.probabilities(x[:1]), expected[:1], atol=1e-4)
    assert read_onnx_meta(path) == meta


def test_export_refuses_old_opsets(tmp_path: Path) -> None:
    net, meta = untrained_checkpoint(tmp_path / "m.pt")
    with pytest.raises(ConfigError, match="opset 13 is too old"):
        export_onnx(net, meta, tmp_path / "m.onnx", opset=13)
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_without_merkit_metadata_is_refused(tmp_path: Path) -> None:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "bare",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "bare.onnx"
    onnx.save(onnx.helper.make_model(graph), str(path))
    with pytest.raises(ConfigError, match="bare.onnx: ONNX model lacks merkit metadata"):
        Predictor.load(path)


@pytest.mark.slow
def test_predict_with_an_exported_model_matches_the_checkpoint(
    exported: dict[str, tuple], tmp_path: Path
) -> None:
    _, _, pt, onnx_path = exported["cabm"]
    clip = face_clip(tmp_path / "astronaut", count=6, apex=3, peak=3.0)
    from_pt = Predictor.load(pt).predict(clip.path, picture_dir=tmp_path / "a")
    from_onnx = Predictor.load(onnx_path).predict(clip.path, picture_dir=tmp_path / "b")
    assert from_onnx["apex"] == from_pt["apex"] and from_onnx["predicted"] == from_pt["predicted"]
    for name, p in from_pt["probabilities"].items():
        assert from_onnx["probabilities"][name] == pytest.approx(p, abs=1e-4)
    assert Path(from_onnx["picture"]["path"]).is_file()
    assert from_onnx["picture"]["attention"] is None  # flow arrows only: no maps from onnx
