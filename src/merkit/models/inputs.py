"""What prepared data a model can take: `check_input` before any work, `model_input` to shape it.

Prepared arrays come as (N, C, H, W) for "maps", "apex" and "regions" outputs and (N, T, C, H, W)
for "sequence" outputs. Every model sees a 4-D batch: sequences are flattened frame-major to
(N, T * C, H, W) (the layout of `merkit.models.layers`). Image-shaped kinds share the layout, so
an image model runs on any of them (ConVAT and CABM are published on both maps and apex
frames); sequence models take only sequences.

The checks build the model on PyTorch's `meta` device: shapes and options are verified by a
forward that allocates nothing and computes nothing, so checking the authors' 140 M-parameter
HTNet costs what checking a small model does. The same probe counts the activations a batch will
need, which the torch engine uses to size its buckets of folds (`activation_floats`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from merkit.errors import ConfigError
from merkit.models.registry import create_model, get_descriptor
from merkit.preprocess.config import PrepareConfig
from merkit.preprocess.targets import PACKED_CHANNELS, pack_sequence

# Classes a probe builds its head for before the data are read (any count >= 2 has the shapes).
PROBE_CLASSES = 3


def inference_input(model_name: str, x: np.ndarray) -> np.ndarray:
    """A batch of prepared arrays as a trained model takes them at inference: sequences
    flattened, and for packed-target models grey frames packed with zero targets (targets are
    read only while training)."""
    if get_descriptor(model_name).packs_targets and x.ndim == 5 and x.shape[2] == 1:
        x = np.stack([pack_sequence(clip, targets=False) for clip in x])
    return np.asarray(model_input(x), dtype=np.float32)


def model_input(x: np.ndarray) -> np.ndarray:
    """Prepared arrays as models take them: (N, T, C, H, W) -> (N, T * C, H, W); 4-D unchanged."""
    if x.ndim == 5:
        return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])
    return x


def prepared_shape(model_name: str, prepare: PrepareConfig) -> tuple[int, ...]:
    """The shape of one sample as the model trains on it, known from the preparation alone:
    `prepare.item_shape`, with the packed targets' channels for a model that packs them."""
    shape = prepare.item_shape
    if get_descriptor(model_name).packs_targets and len(shape) == 4 and shape[1] == 1:
        shape = (shape[0], len(PACKED_CHANNELS), *shape[2:])
    return shape


def _describe(kind: str | None, shape: Sequence[int]) -> str:
    return f"{kind} data of shape {tuple(shape)}" if kind else f"data of shape {tuple(shape)}"


def check_input(
    model_name: str,
    x_shape: Sequence[int],
    kind: str | None = None,
    num_classes: int = PROBE_CLASSES,
    **model_kwargs: object,
) -> tuple[int, ...]:
    """Check that data of `x_shape` (and input `kind`, if known) suit `model_name` built with
    `model_kwargs`; returns the 4-D shape the model sees.

    One ConfigError names the model, what it takes and what the data are, before any work; a
    last probe forward on the `meta` device catches what only the model knows (e.g. a fixed
    input size, options that do not fit together).
    """
    descriptor = get_descriptor(model_name)
    spec = descriptor.input
    shape = tuple(int(s) for s in x_shape)
    given = _describe(kind, shape)
    wants_sequence = spec.kind == "sequence"
    is_sequence = kind == "sequence" or (kind is None and len(shape) == 5)
    if wants_sequence != is_sequence:
        takes = (
            f"frame sequences (prepare output='sequence', {spec.frames} frames of "
            f"{spec.channels} channel(s))"
            if wants_sequence
            else "motion maps or apex images or region mosaics (prepare output='maps', 'apex' "
            "or 'regions')"
        )
        raise ConfigError(f"model {model_name!r} takes {takes}, but got {given}")
    if len(shape) not in (4, 5) or (len(shape) == 5 and not wants_sequence):
        raise ConfigError(
            f"model {model_name!r} expected (N, C, H, W) or (N, T, C, H, W) data, got {given}"
        )
    if len(shape) == 5:
        channels = shape[2]
        if channels != spec.channels and "frame_channels" not in model_kwargs:
            raise ConfigError(
                f"model {model_name!r} takes {spec.channels} channel(s) per frame, but got "
                f"{channels} in {given}"
                + (
                    "; pack the flow and landmark targets beside the grey frames with "
                    "merkit.preprocess.targets.pack_sequences"
                    if descriptor.packs_targets
                    else ""
                )
            )
        shape = (shape[0], shape[1] * shape[2], *shape[3:])
    if shape[0] < 1 or min(shape[1:]) < 1:
        raise ConfigError(f"model {model_name!r} got empty {given}")
    try:
        activation_floats(model_name, shape[1:], num_classes, _options(model_kwargs))
    except ConfigError as exc:
        raise ConfigError(f"model {model_name!r} cannot run on {given}: {exc}") from None
    return shape


def _options(model_kwargs: dict[str, object]) -> str:
    """Model options as a canonical string: the probe's cache key."""
    try:
        return json.dumps(model_kwargs, sort_keys=True)
    except TypeError as exc:
        raise ConfigError(
            f"model options must be plain values (numbers, text, lists): {exc}"
        ) from None


@lru_cache(maxsize=64)
def activation_floats(
    model_name: str, shape: tuple[int, ...], num_classes: int, options: str
) -> int:
    """Floats of every leaf module's output for one sample of `shape` (C, H, W), counted by an
    eval-mode forward of two samples on the `meta` device; a ConfigError with the first line of
    the model's own complaint when it cannot run. `options`: the model kwargs as JSON."""
    kwargs = json.loads(options)
    floats = 0

    def count(_: torch.nn.Module, __: object, out: object) -> None:
        nonlocal floats
        floats += out.numel() if isinstance(out, torch.Tensor) else 0

    with torch.device("meta"):
        model = create_model(model_name, num_classes, shape[0], **kwargs)
        hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
        try:
            with torch.no_grad():
                out = model.eval()(torch.zeros(2, *shape))
        except (RuntimeError, ValueError, NotImplementedError) as exc:
            text = str(exc).strip()
            raise ConfigError(text.splitlines()[0] if text else type(exc).__name__) from None
        finally:
            for hook in hooks:
                hook.remove()
    if tuple(out.shape) != (2, num_classes):
        raise ConfigError(f"it returned {tuple(out.shape)}, expected (2, {num_classes})")
    return max(floats // 2, 1)
