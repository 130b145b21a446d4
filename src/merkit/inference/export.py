"""ONNX export of a checkpoint, and running an exported model with onnxruntime.

The exported file carries the checkpoint's metadata in its `metadata_props`: the whole metadata
as JSON under `merkit.meta`, plus `class_names`, `input_spec` and `prepare_config` as readable
JSON strings for other tools. So an .onnx file alone is enough for `merkit predict`.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from merkit.errors import ConfigError, DataLayoutError
from merkit.inference.checkpoint import CheckpointMeta, check_finite, input_spec_of, parse_meta
from merkit.io import write_bytes_atomic

META_KEY = "merkit.meta"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter logs about optional packages (torchvision) and deprecations."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(
    model: nn.Module, meta: CheckpointMeta, out: str | Path, opset: int = DEFAULT_OPSET
) -> Path:
    """Write `model` as ONNX (dynamic batch axis, logits output) with `meta` in metadata_props."""
    import onnx

    if opset < 17:
        raise ConfigError(f"ONNX opset {opset} is too old; merkit exports with opset >= 17")
    example = torch.zeros(2, meta.in_chans, *meta.input_spec["size"])  # as the model sees it
    batch = torch.export.Dim("batch")
    model = model.eval()
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    proto = program.model_proto
    props = {
        META_KEY: json.dumps(meta.to_dict()),
        "class_names": json.dumps(list(meta.class_names)),
        "input_spec": json.dumps(meta.input_spec),
        "prepare_config": json.dumps(meta.prepare),
    }
    onnx.helper.set_model_props(proto, props)  # replaces any earlier props
    proto.producer_name = "merkit"
    return write_bytes_atomic(out, proto.SerializeToString())


def _props(proto: object) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}  # type: ignore[attr-defined]


def read_onnx_meta(path: str | Path) -> CheckpointMeta:
    """The merkit metadata stored in an exported .onnx file, checked as a checkpoint's is (its
    weights too: none may be NaN or infinite)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ConfigError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    props = _props(proto)
    if META_KEY not in props:
        raise ConfigError(
            f"{path}: ONNX model lacks merkit metadata; export it with `merkit export`"
        )
    meta = parse_meta(props[META_KEY], str(path))
    weights = {
        tensor.name: torch.as_tensor(np.array(onnx.numpy_helper.to_array(tensor)))
        for tensor in proto.graph.initializer
        if tensor.data_location != onnx.TensorProto.EXTERNAL
    }
    check_finite(weights, str(path))
    return meta


def check_graph(session: Any, meta: CheckpointMeta, path: Path) -> None:
    """Refuse an exported model whose graph does not take or give what its metadata says (the
    sizes the graph fixes; the batch axis is free), naming the file before any clip is read."""
    names = ", ".join(meta.class_names)
    outputs = session.get_outputs()[0].shape
    if outputs and isinstance(outputs[-1], int) and outputs[-1] != meta.num_classes:
        raise ConfigError(
            f"{path}: the model gives {outputs[-1]} class scores, its metadata names "
            f"{meta.num_classes} classes ({names})"
        )
    expected = (meta.in_chans, *input_spec_of(meta.prepare_config).size)
    inputs = session.get_inputs()[0].shape[1:]
    fixed = [(g, e) for g, e in zip(inputs, expected, strict=False) if isinstance(g, int)]
    if len(inputs) != len(expected) or any(g != e for g, e in fixed):
        shown = ", ".join(str(d) for d in inputs)
        raise ConfigError(
            f"{path}: the model takes inputs of shape (N, {shown}), its metadata says "
            f"(N, {', '.join(map(str, expected))})"
        )


class OnnxBackend:
    """An exported model run by onnxruntime: class probabilities, no attention maps."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise DataLayoutError(f"{path}: ONNX model does not exist")
        self.meta = read_onnx_meta(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # one small input per call: threads only contend
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        check_graph(self.session, self.meta, path)
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]
        shifted = logits - logits.max(axis=-1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=-1, keepdims=True)

    def attention(self, x: np.ndarray) -> np.ndarray | None:
        return None
