"""What prepared data a model can take: `check_input` before training, `model_input` to shape it.

Prepared arrays come as (N, C, H, W) for "flow" and "apex" outputs and (N, T, C, H, W) for
"sequence" outputs. Every model sees a 4-D batch: sequences are flattened frame-major to
(N, T * C, H, W) (the layout of `merkit.models.layers`). Flow and apex models share the image
layout, so either kind runs on either (ConVAT and CABM are published on both); sequence models
take only sequences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from merkit.errors import ConfigError
from merkit.models.registry import InputSpec, create_model, get_model_entry
from merkit.preprocess.targets import PACKED_CHANNELS, pack_sequence


def packs_targets(model_name: str) -> bool:
    """Whether the model reads training targets packed beside its frames (MOL's layout)."""
    spec = get_model_entry(model_name).input_spec
    return spec.kind == "sequence" and spec.channels == len(PACKED_CHANNELS)


def inference_input(model_name: str, x: np.ndarray) -> np.ndarray:
    """A batch of prepared arrays as a trained model takes them at inference: sequences
    flattened, and for packed-target models grey frames packed with zero targets (targets are
    read only while training)."""
    if packs_targets(model_name) and x.ndim == 5 and x.shape[2] == 1:
        x = np.stack([pack_sequence(clip, targets=False) for clip in x])
    return np.asarray(model_input(x), dtype=np.float32)


def model_input(x: np.ndarray) -> np.ndarray:
    """Prepared arrays as models take them: (N, T, C, H, W) -> (N, T * C, H, W); 4-D unchanged."""
    if x.ndim == 5:
        return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])
    return x


def _describe(kind: str | None, shape: Sequence[int]) -> str:
    return f"{kind} data of shape {tuple(shape)}" if kind else f"data of shape {tuple(shape)}"


def check_input(
    model_name: str,
    x_shape: Sequence[int],
    kind: str | None = None,
    num_classes: int = 3,
    **model_kwargs: object,
) -> tuple[int, ...]:
    """Check that prepared data of `x_shape` (and output `kind`, if known) suit `model_name`.

    Returns the 4-D shape the model will see. Raises one ConfigError naming the model, what it
    takes and what the data are, before any training starts. A last probe forward on two zero
    samples catches what only the model knows (e.g. a fixed input size).
    """
    spec = get_model_entry(model_name).input_spec
    shape = tuple(int(s) for s in x_shape)
    given = _describe(kind, shape)
    wants_sequence = spec.kind == "sequence"
    is_sequence = kind == "sequence" or (kind is None and len(shape) == 5)
    if wants_sequence != is_sequence:
        takes = (
            f"frame sequences (prepare output='sequence', {spec.frames} frames of "
            f"{spec.channels} channel(s))"
            if wants_sequence
            else "flow maps or apex images or region mosaics (prepare output='flow', 'apex' "
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
                f"{channels} in {given}" + _packing_hint(spec)
            )
        shape = (shape[0], shape[1] * shape[2], *shape[3:])
    if shape[0] < 1 or min(shape[1:]) < 1:
        raise ConfigError(f"model {model_name!r} got empty {given}")
    _probe(model_name, shape, given, num_classes, model_kwargs)
    return shape


def _packing_hint(spec: InputSpec) -> str:
    if spec.channels == 4:
        return (
            "; pack the flow and landmark targets beside the grey frames with "
            "merkit.preprocess.targets.pack_sequences"
        )
    return ""


def _probe(
    model_name: str,
    shape: tuple[int, ...],
    given: str,
    num_classes: int,
    model_kwargs: dict[str, object],
) -> None:
    """Build the model for `shape` and run two zero samples through it, in eval mode."""
    model = create_model(model_name, num_classes, shape[1], **model_kwargs)
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *shape[1:]))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"model {model_name!r} cannot run on {given}: {first}") from None
    if tuple(out.shape) != (2, num_classes):
        raise ConfigError(
            f"model {model_name!r} returned {tuple(out.shape)} on {given}, "
            f"expected (2, {num_classes})"
        )
