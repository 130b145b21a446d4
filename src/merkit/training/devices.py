"""Where tensors live and in what precision they are computed: one place for every command.

`--device auto|cpu|cuda|cuda:N|mps` (config key `device`) and `--precision fp32|bf16|fp16`
(config key `precision`) mean the same in `train`, `audit`, `fit`, `evaluate`, `predict`, `serve`
and the benchmark scripts. "auto" is the first CUDA device when there is one, else the CPU. A
device this machine lacks is one sentence naming what it has. The device a run used is written
in its metadata and report; it is not part of what decides a run's identity (a run resumed on
another device keeps its folds), while the precision is.

Mixed precision is autocast: matrix products and convolutions in bf16 or fp16, reductions and
the loss in fp32; fp16 training also scales the loss (`torch.amp.GradScaler`) so that small
gradients do not underflow. fp32 is the default everywhere.

Determinism: on the CPU, training always runs under PyTorch's deterministic algorithms (the same
seed and thread count give the same bits). On a GPU that costs speed, and some kernels have no
deterministic form, so it is asked for with `--deterministic` (config key `deterministic`), which
also sets cuDNN's and cuBLAS's switches; kernels without a deterministic form then warn instead
of failing. What may differ between devices is documented in docs/gpu.md.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from merkit.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = ("fp32", "bf16", "fp16")
# cuBLAS needs a fixed workspace for reproducible results (PyTorch's reproducibility notes).
CUBLAS_WORKSPACE = ":4096:8"


@dataclass(frozen=True)
class Placement:
    """Where and how an engine computes: the device's name (resolved where the work runs, so a
    worker process can be given its own GPU), the precision, and GPU determinism."""

    device: str = "cpu"
    precision: str = "fp32"
    deterministic: bool = False

    def on(self, device: str) -> Placement:
        return Placement(device, self.precision, self.deterministic)


CPU = Placement()


def as_float(batch: Any) -> Any:
    """A batch of prepared arrays as float32: uint8 frames are intensities x 255, float16 and
    float32 arrays keep their values."""
    import torch

    if batch.dtype == torch.uint8:
        return batch.float().div_(255)
    return batch.float()


def check_device_text(text: str) -> str:
    """`text` if it names a device kind merkit knows (whether or not this machine has it)."""
    kind, _, index = text.partition(":")
    if kind in ("auto", "cpu", "mps") and not index:
        return text
    if kind == "cuda" and (not index or index.isdigit()):
        return text
    raise ConfigError(f"device {text!r} is not a device; choose {DEVICE_CHOICES}")


def check_precision(text: str) -> str:
    if text not in PRECISIONS:
        raise ConfigError(f"precision {text!r} must be one of {', '.join(PRECISIONS)}")
    return text


def available() -> str:
    """What this machine offers, as a user reads it."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(_cuda_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return ", ".join(found)


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(text: str) -> Any:
    """The `torch.device` that `text` names on this machine; one sentence naming what is
    available when it has no such device."""
    import torch

    check_device_text(text)
    if text == "auto":
        return torch.device("cuda", 0) if _cuda_count() else torch.device("cpu")
    device = torch.device(text)
    if device.type == "cuda":
        count = _cuda_count()
        index = device.index or 0
        if index >= count:
            raise ConfigError(
                f"--device {text}: this machine has no such CUDA device "
                f"(available: {available()}); install the CUDA build of torch on a machine "
                "with an NVIDIA GPU, or choose --device cpu"
            )
        return torch.device("cuda", index)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"--device mps: this machine has no MPS device (available: {available()})"
        )
    return device


def describe(device: Any, precision: str = "fp32", deterministic: bool = False) -> str:
    """How a run computed, as its metadata and report say it: "cpu, fp32", or
    "cuda:0 (NVIDIA H100 80GB HBM3), bf16, deterministic kernels"."""
    import torch

    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    parts = [name, precision]
    if device.type != "cpu" and deterministic:
        parts.append("deterministic kernels")
    return ", ".join(parts)


def autocast_dtype(precision: str) -> Any:
    """The autocast dtype of `precision` (None for fp32: no autocast)."""
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[check_precision(precision)]


def autocast(device: Any, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for `precision` on `device` (a no-op for fp32)."""
    import torch

    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: Any, precision: str) -> Any:
    """A loss scaler for fp16 training (None otherwise: bf16 has fp32's exponent range)."""
    import torch

    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


@contextlib.contextmanager
def determinism(device: Any, deterministic: bool) -> Iterator[None]:
    """PyTorch's deterministic algorithms while training: always on the CPU (the same seed and
    thread count give the same bits), on a GPU when `deterministic` (cuDNN deterministic and
    not benchmarking, cuBLAS's fixed workspace; kernels without a deterministic form warn).
    The caller's settings are restored afterwards."""
    import torch

    gpu = device.type != "cpu"
    if gpu and not deterministic:
        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # fastest kernels for the fixed batch shapes
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = previous
        return
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if gpu:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=gpu)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]
