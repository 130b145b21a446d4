"""Cost of every registered model: parameters, MFLOPs per sample and CPU milliseconds per sample.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on one forward at the model's
default input (matmuls, convolutions and attention; 1 multiply-add = 2 FLOPs). Timings are the
median over a few repeats of one batch, after a warm-up: "train" is forward + auxiliary loss +
backward, "infer" an eval-mode forward without gradients, both divided by the batch size. They
take seconds per model, so they are cached in a JSON file (default
`$XDG_CACHE_HOME/merkit/model_profile.json`, else `~/.cache/merkit/...`) keyed by model, torch
version and thread count, and re-measured when the model's parameter count changes.

Closed-form models (features + SVM, `merkit.models.svm`) have no gradient step and no
parameters before they are fitted: their row has neither a train time nor a parameter count, and
its MFLOPs and infer time cover the feature extraction (the SVM then adds about 2 x support
vectors x features FLOPs, known only once it is fitted). An ensemble (`recommended`) counts
its networks' parameters and the forward of all its members, and has no single train time.
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
from merkit.models.registry import create_model, get_model_entry, list_models

PROFILE_FILE = "model_profile.json"


@dataclass
class ModelProfile:
    """One row of `merkit models`."""

    name: str
    kind: str
    input: str  # e.g. "3x28x28" or "8x1x64x64" (frames x channels x H x W)
    params: int | None  # None for closed-form models (their size depends on the data)
    mflops: float  # forward, per sample
    train_ms: float | None  # per sample; None when timing was skipped or not trained by gradient
    infer_ms: float | None
    groupable: bool
    description: str
    training: str = "gradient"


def default_cache_path() -> Path:
    """Where measured timings are kept between runs."""
    return user_cache_dir() / PROFILE_FILE


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one eval-mode forward of `x`."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(x)
    return counter.get_total_flops()


def _median_ms(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up: allocations, lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def time_model(
    model: nn.Module, x: torch.Tensor, num_classes: int, repeats: int = 3, train: bool = True
) -> tuple[float | None, float]:
    """(train, infer) milliseconds per sample on the batch `x` (train None if not `train`)."""
    y = torch.arange(len(x)) % num_classes

    def train_step() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        aux = getattr(model, "aux_loss", None)
        if callable(aux) and (extra := aux()) is not None:
            loss = loss + extra
        loss.backward()

    def infer_step() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    infer = _median_ms(infer_step, repeats) / len(x)
    return (_median_ms(train_step, repeats) / len(x) if train else None), infer


def _input_label(name: str) -> str:
    spec = get_model_entry(name).input_spec
    dims = (spec.frames, spec.channels) if spec.kind == "sequence" else (spec.channels,)
    return "x".join(str(d) for d in (*dims, *spec.size))


def _cache_key(name: str) -> str:
    return f"{name}|torch {torch.__version__}|threads {torch.get_num_threads()}"


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def profile_model(
    name: str,
    timing: bool = True,
    cached: dict | None = None,
    batch_size: int = 8,
    num_classes: int = 5,
) -> ModelProfile:
    """Measure one registered model at its default input (`cached` timings reused if valid)."""
    entry = get_model_entry(name)
    shape = (entry.input_spec.in_chans, *entry.input_spec.size)
    torch.manual_seed(0)
    model = create_model(name, num_classes, shape[0])
    gradient = entry.training == "gradient"
    params = None if entry.closed_form else sum(p.numel() for p in model.parameters())
    x = torch.rand(batch_size, *shape)
    flops = count_flops(model, x[:1])
    train = infer = None
    if timing:
        if cached and cached.get("params") == params and cached.get("batch_size") == batch_size:
            train, infer = cached["train_ms"], cached["infer_ms"]
        else:
            train, infer = time_model(model, x, num_classes, train=gradient)
    return ModelProfile(
        name=name,
        kind=entry.input_spec.kind,
        input=_input_label(name),
        params=params,
        mflops=flops / 1e6,
        train_ms=train,
        infer_ms=infer,
        groupable=entry.groupable,
        description=entry.description,
        training=entry.training,
    )


def profile_models(
    names: Sequence[str] | None = None,
    *,
    timing: bool = True,
    refresh: bool = False,
    cache_path: Path | None = None,
    batch_size: int = 8,
    progress: Callable[[str], None] | None = None,
) -> list[ModelProfile]:
    """Profile `names` (default: every registered model); timings cached unless `refresh`."""
    path = Path(cache_path) if cache_path is not None else default_cache_path()
    cache = {} if not timing else _read_cache(path)
    rows = []
    for name in names or list_models():
        if progress is not None:
            progress(name)
        key = _cache_key(name)
        row = profile_model(
            name, timing, None if refresh else cache.get(key), batch_size=batch_size
        )
        rows.append(row)
        if timing:
            cache[key] = {
                "params": row.params,
                "batch_size": batch_size,
                "train_ms": row.train_ms,
                "infer_ms": row.infer_ms,
            }
    if timing:
        write_json_atomic(path, cache)
    return rows


def as_dicts(rows: Sequence[ModelProfile]) -> list[dict]:
    """Rows as plain dicts (for JSON)."""
    return [asdict(r) for r in rows]
