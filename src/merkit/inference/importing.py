"""`merkit import`: published per-fold weights -> merkit checkpoints that know their input.

A folder of `{subject}.pth` files (one per LOSO fold, named by the subject the fold left out, as
STSTNet released them) becomes a folder of `{subject}.pt` merkit checkpoints. Each records the
weights' input convention (`CheckpointMeta.input_convention`) and where it came from
(`origin`: format, file, sha256, left-out subject), so `merkit evaluate`, `predict` and
`export` feed each network exactly the input it was trained on. Files are read with
`weights_only=True`: nothing in them is executed, and a file that holds anything but tensors is
refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import warnings
from pathlib import Path

import torch

from merkit.errors import ConfigError, DataLayoutError
from merkit.inference.checkpoint import Checkpoint, CheckpointMeta, check_finite, input_spec_of
from merkit.io import check_writable
from merkit.models import create_model, get_descriptor
from merkit.models.imported import ConventionAdapter, WeightFormat, weight_format
from merkit.preprocess.config import PrepareConfig
from merkit.provenance import versions

WEIGHT_SUFFIXES = (".pth", ".pt")
CHECKPOINT_SUFFIX = ".pt"


# How a PyTorch weights file begins: a zip archive (torch.save), or a pickle (the legacy format)
WEIGHT_MAGICS = (b"PK", b"\x80")


def read_state(path: Path) -> object:
    """The object a weights file holds, loaded without running any pickled code.

    A file that begins as neither a zip archive nor a pickle is named as such first, so a stray
    text file is not mistaken for a pickle refused as possible code.
    """
    with path.open("rb") as handle:
        head = handle.read(2)
    if not head.startswith(WEIGHT_MAGICS):
        raise ConfigError(
            f"{path}: not a PyTorch weights file ({path.stat().st_size} bytes, neither a zip "
            "archive nor a pickle)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy-protocol notice is not the user's concern
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise ConfigError(
                f"{path}: refused: the file holds pickled objects other than tensors (possibly "
                "code); it was read with weights_only=True and nothing in it was run"
            ) from None
        raise ConfigError(f"{path}: cannot be read as PyTorch weights (corrupt pickle)") from None
    except Exception as exc:  # truncated or not a torch file: torch raises many kinds
        raise ConfigError(
            f"{path}: cannot be read as PyTorch weights (truncated or not a weights file: "
            f"{type(exc).__name__})"
        ) from None


def weight_files(folder: Path) -> list[Path]:
    """The per-fold weights files of `folder`, sorted; one sentence when there are none."""
    if not folder.is_dir():
        raise DataLayoutError(f"{folder}: weights folder does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not files:
        suffixes = " or ".join(WEIGHT_SUFFIXES)
        raise DataLayoutError(f"{folder}: no {suffixes} weights files (one per left-out subject)")
    return files


def imported_checkpoint(path: Path, spec: WeightFormat) -> Checkpoint:
    """One published weights file as a merkit checkpoint of `spec`'s model."""
    net = create_model(spec.model, len(spec.class_names), len(spec.convention.channel_order))
    state = spec.to_merkit(read_state(path), net.state_dict(), str(path))
    check_finite(state, str(path))
    net.load_state_dict(state)
    prepare = PrepareConfig(**get_descriptor(spec.model).prepare_keys())
    meta = CheckpointMeta(
        model=spec.model,
        model_kwargs={},
        num_classes=len(spec.class_names),
        in_chans=len(spec.convention.channel_order),
        class_names=spec.class_names,
        input_spec=dataclasses.asdict(input_spec_of(prepare)),
        prepare=dataclasses.asdict(prepare),
        versions=versions(),
        input_convention=spec.convention.to_dict(),
        origin={
            "format": spec.name,
            "source": spec.source,
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "left_out_subject": path.stem,
        },
    )
    model = ConventionAdapter(net, spec.convention)
    return Checkpoint(model.eval(), CheckpointMeta.from_dict(meta.to_dict()))


def import_weights(format_name: str, weights_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Convert every weights file of `weights_dir`; all are checked before any is written."""
    spec = weight_format(format_name)
    out = check_writable(out_dir)
    checkpoints = {p.stem: imported_checkpoint(p, spec) for p in weight_files(Path(weights_dir))}
    try:
        out.mkdir(parents=True, exist_ok=True)
        return [c.save(out / f"{stem}{CHECKPOINT_SUFFIX}") for stem, c in checkpoints.items()]
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write checkpoints there ({exc.strerror})") from None
