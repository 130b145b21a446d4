"""Using a trained model: final models and checkpoints, `Predictor`, ONNX export."""

from merkit.inference.checkpoint import (
    Checkpoint,
    CheckpointMeta,
    fit_final,
    load_checkpoint,
    save_checkpoint,
)
from merkit.inference.export import OnnxBackend, export_onnx, read_onnx_meta
from merkit.inference.predictor import Predictor, predict_many

__all__ = [
    "Checkpoint",
    "CheckpointMeta",
    "OnnxBackend",
    "Predictor",
    "export_onnx",
    "fit_final",
    "load_checkpoint",
    "predict_many",
    "read_onnx_meta",
    "save_checkpoint",
]
