"""Using a trained model: final models and checkpoints, `Predictor`, ONNX export.

The names load lazily: a light module of this package (e.g. `picture`) can be
imported without torch, which only the checkpoint, export and predictor modules need.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Checkpoint": "checkpoint",
    "CheckpointMeta": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "OnnxBackend": "export",
    "export_onnx": "export",
    "read_onnx_meta": "export",
    "Predictor": "predictor",
    "predict_many": "predictor",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'merkit.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(f"merkit.inference.{_WHERE[name]}"), name)
