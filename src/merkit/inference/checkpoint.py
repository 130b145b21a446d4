"""Final models and self-describing checkpoints.

A checkpoint is one `torch.save` file holding a plain dict: the format tag, the metadata as a JSON
string, and the state dict (tensors only). `torch.load(weights_only=True)` reads it back without
unpickling any code, and the metadata says everything needed to use the model on a new video: the
architecture and its options, the class names, and the exact preprocessing (`PrepareConfig`) the
training inputs were made with -- so `merkit predict` computes the same motion maps.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from merkit.errors import ConfigError, DataLayoutError
from merkit.io import write_atomic
from merkit.models import InputSpec, create_model
from merkit.models.blocks import ProbabilityAverage
from merkit.models.imported import ConventionAdapter, InputConvention
from merkit.preprocess.pipeline import PrepareConfig

FORMAT = "merkit-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CheckpointMeta:
    """Everything a checkpoint says about its model, as JSON-able values."""

    model: str
    model_kwargs: dict[str, Any]
    num_classes: int
    in_chans: int
    class_names: tuple[str, ...]
    input_spec: dict[str, Any]  # InputSpec fields of the arrays the model was trained on
    prepare: dict[str, Any]  # PrepareConfig fields: how those arrays were computed
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed_members: int = 1  # >1: the probability average of that many seed members
    dataset: str = ""
    taxonomy: str = ""
    data_fingerprint: str = ""
    n_samples: int = 0
    seed: int = 0
    trained_at: str = ""
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    # How the weights' input differs from merkit's arrays (InputConvention fields; {}: none)
    input_convention: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Where imported weights came from: format, file, its sha256, the subject the fold left out
    origin: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Samples preparation dropped ({"sample": uid, "reason": ...}): what the model never saw
    failed: list[dict[str, str]] = dataclasses.field(default_factory=list)

    @property
    def prepare_config(self) -> PrepareConfig:
        fields = dict(self.prepare)
        if "magnify_band" in fields:
            fields["magnify_band"] = tuple(fields["magnify_band"])
        return PrepareConfig(**fields)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (tuples become lists), so a JSON round trip is exact."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "checkpoint") -> CheckpointMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        data = {LEGACY_NAMES.get(k, k): v for k, v in data.items()}
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and _required(f)]
        if missing:
            raise ConfigError(f"{source}: metadata lacks {', '.join(missing)}")
        known = {k: v for k, v in data.items() if k in names}
        known["class_names"] = tuple(known["class_names"])
        return cls(**known)


# Metadata keys of earlier releases and the fields that hold them now.
LEGACY_NAMES = {"ensemble": "seed_members"}


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@dataclass
class Checkpoint:
    """A trained model (in eval mode) and its metadata."""

    model: nn.Module
    meta: CheckpointMeta

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(path, self.model, self.meta)


def input_spec_of(config: PrepareConfig) -> InputSpec:
    """The InputSpec of the arrays `config` produces."""
    shape = config.item_shape
    channels = shape[-3]
    frames = config.frames if config.output == "sequence" else 1
    return InputSpec(config.output, channels, tuple(shape[-2:]), frames)


def build_model(meta: CheckpointMeta, source: str = "checkpoint") -> nn.Module:
    """An untrained model of the checkpoint's architecture (an average if it has seed members),
    behind its input convention when the weights expect another input than merkit's arrays."""

    def one() -> nn.Module:
        return create_model(meta.model, meta.num_classes, meta.in_chans, **meta.model_kwargs)

    model = (
        one()
        if meta.seed_members <= 1
        else ProbabilityAverage([one() for _ in range(meta.seed_members)])
    )
    if meta.input_convention:
        convention = InputConvention.from_dict(meta.input_convention, source)
        if len(convention.channel_order) != meta.in_chans:
            raise ConfigError(
                f"{source}: input_convention orders {len(convention.channel_order)} channels, "
                f"the model takes {meta.in_chans}"
            )
        model = ConventionAdapter(model, convention)
    return model


# Bounds of what a checkpoint may ask for: beyond them the metadata is wrong, not the video.
MAX_SIDE = 1024
MAX_FRAMES = 512
# What building and running a checkpoint's model may cost: its weights plus the outputs of one
# input's forward pass, estimated on the meta device (which allocates nothing). The largest
# model merkit ships (HTNet with its authors' sizes, 140 M weights) needs about 0.6 GB.
MAX_MODEL_BYTES = 2 * 1024**3


_META_TYPES: dict[str, type] = {
    "model": str,
    "num_classes": int,
    "in_chans": int,
    "seed_members": int,
    "model_kwargs": dict,
    "prepare": dict,
    "input_spec": dict,
    "input_convention": dict,
}


def check_meta(meta: CheckpointMeta, source: str) -> None:
    """Refuse metadata that cannot describe a usable model, naming the checkpoint and field,
    before anything is built or any video is read."""
    for name, kind in _META_TYPES.items():
        value = getattr(meta, name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(
                f"{source}: invalid checkpoint metadata: {name} is {value!r}, "
                f"expected {kind.__name__}"
            )
    if not all(isinstance(name, str) for name in meta.class_names):
        raise ConfigError(f"{source}: invalid checkpoint metadata: class names must be text")
    try:
        config = meta.prepare_config
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(
            f"{source}: metadata 'prepare' is not a valid preparation ({exc})"
        ) from None
    problems = [
        (meta.num_classes >= 2, f"num_classes is {meta.num_classes}"),
        (
            len(meta.class_names) == meta.num_classes,
            f"{len(meta.class_names)} class names for {meta.num_classes} outputs",
        ),
        (len(set(meta.class_names)) == len(meta.class_names), "class names repeat"),
        (meta.in_chans >= 1, f"in_chans is {meta.in_chans}"),
        (meta.seed_members >= 1, f"seed_members is {meta.seed_members}"),
        (4 <= config.size <= MAX_SIDE, f"prepare.size is {config.size} (at most {MAX_SIDE})"),
        (
            config.crop_size <= 4 * MAX_SIDE,
            f"prepare.crop_size is {config.crop_size} (at most {4 * MAX_SIDE})",
        ),
        (config.frames <= MAX_FRAMES, f"prepare.frames is {config.frames} (at most {MAX_FRAMES})"),
    ]
    for ok, what in problems:
        if not ok:
            raise ConfigError(f"{source}: invalid checkpoint metadata: {what}")


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or infinity: such a model answers NaN, never a class."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ConfigError(
                f"{source}: the weights hold NaN or infinite values (tensor {name}); a model "
                "with them answers NaN probabilities, not a class"
            )


def _forward_bytes(member: nn.Module, shape: tuple[int, ...]) -> int:
    """Bytes of every module's output for one input of `shape`, run on the meta device (an
    upper bound of what a forward pass holds); 0 for a member that cannot run there (a classic
    pipeline computing features with CPU tensors: its weights are its cost)."""
    total = 0

    def count(_: nn.Module, __: object, out: object) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    handles = [module.register_forward_hook(count) for module in member.modules()]
    try:
        with torch.no_grad():
            member.eval()(torch.zeros(shape, device="meta"))
    except Exception:
        return 0
    finally:
        for handle in handles:
            handle.remove()
    return total


def meta_member(meta: CheckpointMeta, source: str) -> nn.Module:
    """One member of the checkpoint's model built on the meta device (nothing is allocated),
    or one sentence naming the checkpoint when its metadata builds no model."""
    try:
        with torch.device("meta"):
            return create_model(meta.model, meta.num_classes, meta.in_chans, **meta.model_kwargs)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"{source}: invalid checkpoint metadata: model {meta.model!r} with model_kwargs "
            f"{meta.model_kwargs} cannot be built ({reason})"
        ) from None


def estimated_bytes(meta: CheckpointMeta, member: nn.Module) -> int:
    """What the checkpoint's model costs: `seed_members` times its member's weights and the outputs
    of one input's forward pass (measured on `member`, built on the meta device)."""
    weights = sum(t.numel() * t.element_size() for t in [*member.parameters(), *member.buffers()])
    shape = (1, meta.in_chans, *input_spec_of(meta.prepare_config).size)
    return meta.seed_members * (weights + _forward_bytes(member, shape))


def check_size(meta: CheckpointMeta, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse, before anything is allocated, metadata asking for a model that the weights
    cannot fill (fewer tensors than its members need) or that would cost more than
    MAX_MODEL_BYTES (`estimated_bytes`)."""
    member = meta_member(meta, source)
    what = f"model {meta.model!r} with model_kwargs {meta.model_kwargs}"
    if meta.seed_members > 1:
        what += f", an average of {meta.seed_members} seed members,"
    needed = meta.seed_members * len(member.state_dict())
    if len(state) < needed:
        raise ConfigError(
            f"{source}: invalid checkpoint metadata: {what} needs {needed} weight tensors, the "
            f"file holds {len(state)}"
        )
    cost = estimated_bytes(meta, member)
    if cost > MAX_MODEL_BYTES:
        raise ConfigError(
            f"{source}: invalid checkpoint metadata: {what} would need about {cost / 1e9:.1f} GB "
            f"(at most {MAX_MODEL_BYTES / 1e9:.1f} GB)"
        )


def parse_meta(text: object, source: str) -> CheckpointMeta:
    """The checked metadata of a checkpoint or an exported model, from its JSON text."""
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the model's metadata is missing or not a JSON object")
    try:
        meta = CheckpointMeta.from_dict(data, source=source)
    except TypeError:
        raise ConfigError(f"{source}: the model's metadata has fields of the wrong type") from None
    check_meta(meta, source)
    return meta


def save_checkpoint(path: str | Path, model: nn.Module, meta: CheckpointMeta) -> Path:
    """Write `model`'s weights and `meta` atomically as a weights-only-loadable file."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": json.dumps(meta.to_dict()),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return write_atomic(path, lambda handle: torch.save(payload, handle), binary=True)


def _payload(path: Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint file's dict, its format checked; no pickled code is run. `mmap` leaves the
    tensors on disk until they are read (for a look at the metadata only)."""
    if not path.is_file():
        raise DataLayoutError(f"{path}: model checkpoint does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:
        raise ConfigError(
            f"{path}: not a readable merkit checkpoint ({type(exc).__name__}); "
            "expected a file written by `merkit fit`"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(
            f"{path}: not a merkit checkpoint; expected a file written by `merkit fit`"
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ConfigError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this merkit "
            f"reads ({FORMAT_VERSION}); upgrade merkit"
        )
    return payload


def read_meta(path: str | Path) -> CheckpointMeta:
    """A checkpoint's checked metadata, its weights left on disk: what a listing of models
    shows."""
    return parse_meta(_payload(Path(path), mmap=True).get("meta"), str(path))


def load_checkpoint(path: str | Path) -> tuple[nn.Module, CheckpointMeta]:
    """The model of a checkpoint in eval mode, and its metadata; no pickled code is run."""
    path = Path(path)
    payload = _payload(path)
    meta = parse_meta(payload.get("meta"), str(path))
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise ConfigError(f"{path}: the checkpoint holds no weights (a state dict of tensors)")
    check_finite(state, str(path))
    check_size(meta, state, str(path))
    model = build_model(meta, str(path))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path}: weights do not fit model {meta.model!r} ({first})") from None
    return model.eval(), meta
