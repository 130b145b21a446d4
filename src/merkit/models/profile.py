"""Cost of a registered model: parameters, MFLOPs per sample and milliseconds per sample.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on one CPU forward at the model's
declared input (matmuls, convolutions and attention; 1 multiply-add = 2 FLOPs); they and the
parameter counts go into the shipped catalog (`merkit.catalog`). Timings are the median over a
few repeats of one batch, after a warm-up: "train" is forward + auxiliary loss + backward,
"infer" an eval-mode forward without gradients, both divided by the batch size. They take seconds
per model and depend on the machine, so `merkit models --timing` measures them on demand and
keeps them in a JSON file (default `$XDG_CACHE_HOME/merkit/model_profile.json`, else
`~/.cache/merkit/...`) keyed by model, torch version, thread count and device.

Closed-form models (features + SVM, `merkit.models.svm`) have no gradient step and no parameters
before they are fitted: neither a train time nor a parameter count, and their MFLOPs and infer
time cover the feature extraction (the SVM then adds about 2 x support vectors x features FLOPs,
known only once it is fitted). An average (`recommended`) counts its networks' parameters and
the forward of all its members, and has no single train time.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from merkit.io import user_cache_dir, write_json_atomic
from merkit.models.registry import create_model, get_descriptor

PROFILE_FILE = "model_profile.json"


@dataclass
class ModelTiming:
    """Measured milliseconds per sample of one model (train None if it has no gradient step)."""

    name: str
    train_ms: float | None
    infer_ms: float
    device: str


def default_cache_path() -> Path:
    """Where measured timings are kept between runs."""
    return user_cache_dir() / PROFILE_FILE


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one eval-mode forward of `x`."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(x)
    return counter.get_total_flops()


def model_cost(name: str, num_classes: int) -> tuple[int | None, int]:
    """(parameters, FLOPs of one sample's forward) of `name` at its declared input; parameters
    None for a closed-form model, whose size comes from the data it is fitted on."""
    descriptor = get_descriptor(name)
    shape = (descriptor.input.in_chans, *descriptor.input.size)
    torch.manual_seed(0)
    model = create_model(name, num_classes, shape[0])
    params = None if descriptor.closed_form else sum(p.numel() for p in model.parameters())
    return params, count_flops(model, torch.zeros(1, *shape))


def _median_ms(step: Callable[[], None], repeats: int, device: torch.device) -> float:
    def timed() -> float:
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) * 1000

    timed()  # warm-up: allocations, lazy initialisation, kernel selection
    return statistics.median(timed() for _ in range(repeats))


def time_model(
    model: nn.Module,
    x: torch.Tensor,
    num_classes: int,
    repeats: int = 3,
    train: bool = True,
    hooks: frozenset[str] = frozenset(),
) -> tuple[float | None, float]:
    """(train, infer) milliseconds per sample on the batch `x`, on `x`'s device (train None if
    not `train`); `hooks`: the model's declared training hooks ("aux_loss" is added)."""
    y = torch.arange(len(x), device=x.device) % num_classes

    def train_step() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        if "aux_loss" in hooks and (extra := model.aux_loss()) is not None:
            loss = loss + extra
        loss.backward()

    def infer_step() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    infer = _median_ms(infer_step, repeats, x.device) / len(x)
    return (_median_ms(train_step, repeats, x.device) / len(x) if train else None), infer


def _cache_key(name: str, device: torch.device) -> str:
    return f"{name}|torch {torch.__version__}|threads {torch.get_num_threads()}|{device}"


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def time_models(
    names: Sequence[str],
    *,
    refresh: bool = False,
    cache_path: Path | None = None,
    batch_size: int = 8,
    num_classes: int = 3,
    device: torch.device | str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> list[ModelTiming]:
    """Time `names` at their declared inputs on `device`; cached timings reused unless
    `refresh` (a model whose parameter count changed is measured again)."""
    device = torch.device(device)
    path = Path(cache_path) if cache_path is not None else default_cache_path()
    cache = _read_cache(path)
    rows = []
    for name in names:
        if progress is not None:
            progress(name)
        descriptor = get_descriptor(name)
        shape = (descriptor.input.in_chans, *descriptor.input.size)
        torch.manual_seed(0)
        model = create_model(name, num_classes, shape[0]).to(device)
        params = sum(p.numel() for p in model.parameters())
        key = _cache_key(name, device)
        cached = None if refresh else cache.get(key)
        if cached and cached.get("params") == params and cached.get("batch_size") == batch_size:
            train, infer = cached["train_ms"], cached["infer_ms"]
        else:
            x = torch.rand(batch_size, *shape, device=device)
            gradient = descriptor.training == "gradient"
            train, infer = time_model(model, x, num_classes, train=gradient, hooks=descriptor.hooks)
        cache[key] = {
            "params": params,
            "batch_size": batch_size,
            "train_ms": train,
            "infer_ms": infer,
        }
        rows.append(ModelTiming(name, train, infer, str(device)))
    write_json_atomic(path, cache)
    return rows


def as_dicts(rows: Sequence[ModelTiming]) -> list[dict]:
    """Rows as plain dicts (for JSON)."""
    return [asdict(r) for r in rows]
