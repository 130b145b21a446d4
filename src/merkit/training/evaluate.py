"""`merkit evaluate`: score per-fold checkpoints under LOSO, each on the subject it left out.

Published LOSO results come with one network per fold (STSTNet released 58 of them). To check
that such weights ARE the published system, each is applied to its own left-out subject only,
the predictions are pooled and scored once, and the usual run folder is written
(`predictions.csv`, `metrics.json`, report). Nothing is trained and no epoch is chosen, so the
figures are exactly the weights' own. A subject without a checkpoint is refused before any work.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from merkit.data.registry import load_dataset
from merkit.errors import ConfigError, DataLayoutError
from merkit.evaluation.report import render_run
from merkit.evaluation.run_folder import RunFolder
from merkit.evaluation.run_meta import DataInfo, ProtocolInfo, RunInfo, RunMeta
from merkit.inference.checkpoint import CheckpointMeta, load_checkpoint
from merkit.inference.importing import CHECKPOINT_SUFFIX
from merkit.inference.predictor import TorchBackend, finite_probabilities
from merkit.provenance import timestamp, versions
from merkit.training.config import DataConfig, build_experiment
from merkit.training.data import TrainingData
from merkit.training.devices import describe, resolve_device


@dataclass
class FoldEvaluation:
    """Where the run folder is, its metrics, and how many subjects and samples were scored."""

    out_dir: Path
    metrics: dict[str, Any]
    n_subjects: int
    n_samples: int
    failed: list[tuple[str, str]]


def fold_checkpoints(folder: Path) -> dict[str, Path]:
    """`{subject}.pt` files of `folder`, by subject."""
    if not folder.is_dir():
        raise DataLayoutError(f"{folder}: folds folder does not exist")
    found = {p.stem: p for p in sorted(folder.glob(f"*{CHECKPOINT_SUFFIX}")) if p.is_file()}
    if not found:
        raise DataLayoutError(
            f"{folder}: no {CHECKPOINT_SUFFIX} checkpoints (one per left-out subject, named "
            "by the subject, e.g. from `merkit import`)"
        )
    return found


def _shared_meta(metas: dict[str, CheckpointMeta], files: dict[str, Path]) -> CheckpointMeta:
    """The metadata every fold shares (model, classes, preparation); one sentence otherwise,
    naming the fold that differs from most of the others (not whichever came first)."""
    for field in ("model", "class_names", "prepare", "input_convention", "model_kwargs"):
        values = {s: json.dumps(getattr(m, field), sort_keys=True) for s, m in metas.items()}
        common, agree = Counter(values.values()).most_common(1)[0]
        odd = next((s for s, value in values.items() if value != common), None)
        if odd is not None:
            raise ConfigError(
                f"{files[odd]}: its {field} differs from that of {agree} of the other "
                f"{len(metas) - 1} folds; all folds of one evaluation must be the same system"
            )
    return next(iter(metas.values()))


def evaluate_folds(
    folds_dir: str | Path,
    data: DataConfig,
    out: str | Path,
    *,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    device: str = "auto",
) -> FoldEvaluation:
    """Score `folds_dir`'s checkpoints on `data` under LOSO into the run folder `out`, each
    model run on `device`."""
    start = timestamp()
    computed_on = describe(resolve_device(device))  # a missing device: refused before any work
    folds_dir = Path(folds_dir).resolve()
    files = fold_checkpoints(folds_dir)
    dataset = load_dataset(data.name, data.root, data.taxonomy, **data.options)
    subjects = sorted({s.subject for s in dataset.samples})
    missing = [s for s in subjects if s not in files]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ConfigError(
            f"{folds_dir}: no checkpoint for subject {shown} of {dataset.name} (expected "
            f"{missing[0]}{CHECKPOINT_SUFFIX}: the fold that left that subject out)"
        )
    models = {s: load_checkpoint(files[s]) for s in subjects}
    meta = _shared_meta({s: m for s, (_, m) in models.items()}, files)
    if list(meta.class_names) != list(dataset.class_names):
        raise ConfigError(
            f"{files[subjects[0]]}: the checkpoints predict {', '.join(meta.class_names)}, "
            f"{dataset.name} ({dataset.taxonomy}) has {', '.join(dataset.class_names)}"
        )
    experiment = build_experiment(
        overrides={
            "data": dataclasses.asdict(data),
            "prepare": meta.prepare,
            "recipe.model": meta.model,
            "recipe.model_kwargs": dict(meta.model_kwargs),
            "workers": workers,
            "cache_dir": str(cache_dir) if cache_dir is not None else None,
        }
    )
    config = {
        "data": dataclasses.asdict(data),
        "prepare": meta.prepare,
        "recipe": {"model": meta.model, "model_kwargs": meta.model_kwargs},
        "weights": {
            "folds_dir": str(folds_dir),
            "origin": {k: v for k, v in meta.origin.items() if k in ("format", "source")},
            "input_convention": meta.input_convention,
        },
        "seeds": [0],
    }
    folder = RunFolder(out)
    folder.claim(config, dataset.fingerprint(), lambda c: c, resume=True, overwrite=overwrite)
    prepared = TrainingData.prepare(experiment, dataset, progress)
    probs = np.zeros((len(prepared.samples), len(meta.class_names)), np.float32)
    groups = np.asarray([s.subject for s in prepared.samples])
    for subject, (model, _) in models.items():
        idx = np.flatnonzero(groups == subject)
        if len(idx):
            found = TorchBackend(model, meta, device).probabilities(prepared.x[idx])
            where = f"the {len(idx)} samples of subject {subject}"
            probs[idx] = finite_probabilities(found, files[subject], where)
    n_scored = len(set(groups))
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.write_meta(
        RunMeta(
            config=config,
            run=RunInfo(name=folder.path.name, started_at=start, finished_at=timestamp()),
            data=DataInfo(
                name=dataset.name,
                root=str(dataset.root),
                taxonomy=dataset.taxonomy,
                class_names=list(dataset.class_names),
                fingerprint=dataset.fingerprint(),
                n_samples=len(dataset),
                n_used=len(prepared.samples),
                n_subjects=n_scored,
                skipped_by_loader=len(dataset.skipped),
                notes=list(dataset.notes),
                failed=[{"sample": u, "reason": r} for u, r in prepared.failed],
            ),
            protocol=ProtocolInfo(
                description=(
                    f"LOSO with per-fold checkpoints: each subject scored by its own "
                    f"{folds_dir.name}/{{subject}}{CHECKPOINT_SUFFIX}, which never saw it"
                ),
                subject_independent=True,
                n_folds=n_scored,
                leakage="per-fold weights, each applied only to the subject its fold left out",
            ),
            determinism={"device": computed_on},
            versions=versions(),
        )
    )
    table = prepared.predictions(probs)
    folder.write_predictions(table, {0: table})
    metrics = render_run(folder.path)
    return FoldEvaluation(folder.path, metrics, n_scored, len(prepared.samples), prepared.failed)
