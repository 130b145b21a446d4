"""The authors' recipes on a GPU: throughput, memory, and a few epochs of one fold each.

One JSON line per (model, precision): training and inference samples per second through
merkit's own engine (host-side batches, pinned copies, augmentation on the device), peak GPU
and host memory, the first and last training losses of a few epochs of one LOSO-sized fold of
the model's preset, and the wall time of that preset's whole LOSO on the MEGC2019 composite
(442 samples, 68 subjects) extrapolated from the measured rate. Models and inputs:
`icip24` (paper: 30 RGB frames of 128 x 128), `mol` (paper: 8 grey frames of 144 x 144,
packed targets), `htnet` (paper: the 140 M-parameter network on 28 x 28 region mosaics), `cabm`
and `recommended` (their default recipes on 28 x 28 maps, 12 folds side by side as `merkit
train` runs them). Data are synthetic clips with a class-dependent pattern at the real size and
dtype (uint8 frames), so the loss has something to learn; nothing is downloaded.

    python3 benchmarks/gpu_paper.py [--device auto] [--seconds 20] [--out gpu.jsonl]

Needs torch, numpy, scikit-learn, pandas, pyyaml and OpenCV (all on a stock CUDA PyTorch image)
and merkit itself: run from the repository root, `src/` is put on the path when merkit is not
installed. On a CPU it runs too (`--device cpu --seconds 10`), which gives the CPU figures the
documentation puts beside the GPU ones. About 6 minutes on one H100 with the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

try:
    import merkit  # noqa: F401
except ImportError:  # a bare GPU image: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

from merkit.models import get_descriptor
from merkit.models.inputs import prepared_shape
from merkit.preprocess.config import PrepareConfig
from merkit.training.base import engine_for
from merkit.training.devices import Placement, describe, resolve_device
from merkit.training.recipe import default_recipe
from merkit.training.validation import member_recipes

COMPOSITE_SAMPLES, COMPOSITE_SUBJECTS = 442, 68
TRAIN_PER_FOLD = COMPOSITE_SAMPLES - COMPOSITE_SAMPLES // COMPOSITE_SUBJECTS  # ~435
# (model, preset, folds trained side by side as `merkit train` batches them)
RUNS = (("icip24", "paper", 1), ("mol", "paper", 1), ("htnet", "paper", 1),
        ("cabm", "default", 12), ("recommended", "default", 12))  # fmt: skip


def synthetic(model: str, preset: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` samples shaped and typed as the model trains on them at `preset`'s input, three
    classes, each marked by a brighter block in its own place (learnable in a few epochs)."""
    descriptor = get_descriptor(model)
    config = PrepareConfig(**descriptor.prepare_keys(preset))
    shape = prepared_shape(model, config)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    frames = config.output in ("sequence", "apex")
    if frames and not descriptor.packs_targets:
        x = rng.integers(60, 120, (n, *shape), dtype=np.uint8)
    else:
        x = rng.random((n, *shape), dtype=np.float32) * 0.3
    h, w = shape[-2:]
    for c in range(3):
        rows, cols = slice(c * h // 3, (c + 1) * h // 3), slice(w // 4, w // 2)
        x[y == c, ..., rows, cols] += 100 if x.dtype == np.uint8 else 0.5
    if len(shape) == 4:  # (N, T, C, H, W) -> what the engine takes: (N, T*C, H, W)
        x = x.reshape(n, shape[0] * shape[1], *shape[2:])
    return x, y


def _rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peaks(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.suppress(OSError):  # resets VmHWM, the peak RSS, on Linux
        Path("/proc/self/clear_refs").write_text("5")


def _peak_host_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _rss_mb()


def train_rate(
    model: str, preset: str, folds: int, placement: Placement, seconds: float
) -> dict[str, float]:
    """Train `folds` LOSO-sized folds side by side with the preset's recipe for about `seconds`
    (the step count set from a two-step warm-up; an average runs its members' whole recipes):
    samples/s, the first and last epochs' losses, peak memory."""
    device = resolve_device(placement.device)
    recipe = default_recipe(model, preset)
    n = TRAIN_PER_FOLD + 7 * folds
    x, y = synthetic(model, preset, n)
    test = [np.arange(TRAIN_PER_FOLD + 7 * f, TRAIN_PER_FOLD + 7 * (f + 1)) for f in range(folds)]
    split = [(np.setdiff1d(np.arange(n), t), t) for t in test]
    engine = engine_for(recipe)
    timed = recipe
    if get_descriptor(model).training == "gradient":
        warm = dataclasses.replace(recipe, max_steps=2)
        start = time.perf_counter()
        engine.fit_predict(warm, x, y, split, 3, placement=placement)
        step_s = max((time.perf_counter() - start) / 2, 1e-4)
        steps = max(3, int(seconds / step_s))
        if recipe.max_steps:
            steps = min(steps, recipe.max_steps)
        timed = dataclasses.replace(recipe, epochs=10**6, max_steps=steps)
    _reset_peaks(device)
    start = time.perf_counter()
    results = engine.fit_predict(timed, x, y, split, 3, output="history", placement=placement)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    history = results[0].history
    losses = next(v for k, v in history.items() if k.endswith("train_loss"))
    steps_run = timed.max_steps or len(losses) * math.ceil(len(split[0][0]) / recipe.batch_size)
    samples = folds * steps_run * min(recipe.batch_size, len(split[0][0]))
    return {
        "train_samples_per_s": samples / wall,
        "train_seconds": wall,
        "steps_run": steps_run,
        "epochs_run": len(losses),
        "first_epoch_loss": float(losses[0]),
        "last_epoch_loss": float(losses[-1]),
        "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else 0.0,
        "peak_host_mb": _peak_host_mb(),
    }


def infer_rate(model: str, preset: str, placement: Placement, seconds: float) -> float:
    """Eval-mode samples/s of the preset's network(s) on batches of 32 (averages: members)."""
    device = resolve_device(placement.device)
    recipe = default_recipe(model, preset)
    members = member_recipes(recipe) if get_descriptor(model).training == "average" else [recipe]
    x, _ = synthetic(model, preset, 32)
    batch = torch.from_numpy(x).to(device)
    batch = batch.float().div_(255) if batch.dtype == torch.uint8 else batch
    from merkit.models import create_model
    from merkit.training.devices import autocast

    nets = [
        create_model(m.model, 3, batch.shape[1], **m.model_kwargs).to(device).eval()
        for m in members
    ]
    with torch.no_grad(), autocast(device, placement.precision):
        for net in nets:
            net(batch)  # warm-up
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or count == 0:
            for net in nets:
                net(batch)
            count += len(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return count / (time.perf_counter() - start)


def loso_hours(model: str, preset: str, trained: dict[str, float], folds: int) -> float:
    """Hours of the preset's whole LOSO on the composite at the measured training rate (for
    models trained side by side, the rate counts every copy's samples); an average ran its
    members' whole recipes on `folds` folds, so its time scales by folds."""
    if get_descriptor(model).training == "average":
        return trained["train_seconds"] * COMPOSITE_SUBJECTS / folds / 3600
    samples_per_s = trained["train_samples_per_s"]
    recipe = default_recipe(model, preset)
    steps_per_epoch = math.ceil(TRAIN_PER_FOLD / recipe.batch_size)
    epochs = recipe.epochs
    if recipe.max_steps:
        epochs = min(epochs, recipe.max_steps / steps_per_epoch)
    samples = COMPOSITE_SUBJECTS * epochs * TRAIN_PER_FOLD
    return samples / samples_per_s / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed training per run")
    parser.add_argument("--models", nargs="*", default=[m for m, _, _ in RUNS])
    parser.add_argument("--precisions", nargs="*", default=["fp32", "bf16"])
    parser.add_argument("--out", type=Path, default=None, help="also append the lines here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    for model, preset, folds in RUNS:
        if model not in args.models:
            continue
        for precision in args.precisions:
            placement = Placement(str(device), precision)
            started = time.perf_counter()
            trained = train_rate(model, preset, folds, placement, args.seconds)
            infer = infer_rate(model, preset, placement, min(5.0, args.seconds / 4))
            line = {
                "model": model,
                "preset": preset,
                "input": get_descriptor(model).input.label()
                if preset == "default"
                else "x".join(map(str, prepared_shape(model, _config(model, preset)))),
                "precision": precision,
                "device": describe(device, precision),
                "folds_side_by_side": folds,
                **{k: round(v, 3) if isinstance(v, float) else v for k, v in trained.items()},
                "infer_samples_per_s": round(infer, 1),
                "loso_hours_extrapolated": round(loso_hours(model, preset, trained, folds), 3),
                "seconds": round(time.perf_counter() - started, 1),
                "torch": torch.__version__,
                "host": platform.node(),
            }
            text = json.dumps(line)
            print(text, flush=True)
            if args.out is not None:
                with args.out.open("a", encoding="utf-8") as handle:
                    handle.write(text + "\n")


def _config(model: str, preset: str) -> PrepareConfig:
    return PrepareConfig(**get_descriptor(model).prepare_keys(preset))


if __name__ == "__main__":
    main()
