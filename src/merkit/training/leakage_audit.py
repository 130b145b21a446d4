"""The leakage audit experiment: how much do the field's common leaks inflate one recipe?

One recipe is trained two ways on the same prepared data and scored the ways the field's papers
scored:

- the LOSO folds (fixed schedule, every epoch's test probabilities kept) are scored by every
  practice registered in `merkit.evaluation.practices` (honest `loso`, the peeking `oracle`,
  ICIP 2024's per-subject averages `subject-mean` and `subject-best`), in registration order;
- `kfold`: CABM-FMER's sample-level stratified k-fold, where a subject sits in train and test, is
  a protocol of its own (its own folds), scored on its pooled last-epoch predictions.

The inflation of a leaking figure is its difference from `loso`. Work is saved as it finishes
(LOSO per-epoch probabilities per fold, k-fold predictions per fold, each pooled figure's
predictions, the epochs a leaking pooled practice chose), so rerunning the same audit into the
same folder skips what is done.
"""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from merkit.errors import ConfigError
from merkit.evaluation.audit_report import audit_document
from merkit.evaluation.document import to_html as document_html
from merkit.evaluation.document import to_markdown as document_markdown
from merkit.evaluation.overlap import OverlapReport, subject_overlap
from merkit.evaluation.practices import PRACTICES, FoldCurves, Practice
from merkit.evaluation.predictions import matching_probabilities, write_predictions
from merkit.evaluation.report import SUMMARY_KEYS, headline_figures, run_metrics
from merkit.evaluation.run_folder import claim_folder
from merkit.evaluation.splitters import (
    LeaveOneSubjectOut,
    SampleKFold,
    Splitter,
    SubjectLeakageWarning,
)
from merkit.io import (
    check_writable,
    differences,
    read_yaml,
    write_atomic,
    write_json_atomic,
    write_text_atomic,
    write_yaml_atomic,
)
from merkit.training import base
from merkit.training.base import Engine
from merkit.training.config import ExperimentConfig
from merkit.training.data import TrainingData
from merkit.training.devices import resolve_device
from merkit.training.runner import (
    DEFAULT_FOLDS_PER_CALL,
    FoldTask,
    RunProgress,
    fixed_chunks,
    fold_tasks,
)

AUDIT_FILE = "audit.json"
AUDIT_MD = "audit.md"
AUDIT_HTML = "audit.html"
IDENTITY_FILE = "audit_config.yaml"
KFOLD = "kfold"
KFOLD_LABEL = "sample-level stratified k-fold, pooled (LEAKS: subjects overlap; CABM-FMER's)"
CURVE_FOLDERS = ("loso_epochs", "kfold_epochs")  # each fold's (epochs, n_test, K) curve


def _data_section(data: TrainingData) -> dict[str, Any]:
    dataset = data.dataset
    return {
        "name": dataset.name,
        "root": str(dataset.root),
        "fingerprint": dataset.fingerprint(),
        "class_names": data.class_names,
        "n_used": len(data.samples),
        "n_subjects": data.n_subjects,
        "failed": [{"sample": uid, "reason": reason} for uid, reason in data.failed],
        **({"landmarks": data.landmarks} if data.landmarks else {}),
    }


# ---- predictions -----------------------------------------------------------------------------


def _pooled_path(out_dir: Path, figure: str) -> Path:
    return out_dir / figure / "predictions.csv"


def _save_pooled(path: Path, probs: np.ndarray, data: TrainingData) -> None:
    write_predictions(path, data.predictions(probs))


# ---- training --------------------------------------------------------------------------------


def _train_folds(
    engine: Engine,
    config: ExperimentConfig,
    data: TrainingData,
    tasks: Sequence[FoldTask],
    folder: Path,
    bar: RunProgress,
) -> dict[str, np.ndarray]:
    """Per fold name its (epochs, n_test, K) curve, loading saved folds and saving new ones
    (`{folder}/{fold}.npy`)."""
    curves: dict[str, np.ndarray] = {}
    slots: list[FoldTask | None] = []
    for task in tasks:
        curve = _load_curve(folder / f"{task.name}.npy", len(task.test), data.num_classes)
        if curve is None:
            slots.append(task)
        else:
            curves[task.name] = curve
            slots.append(None)
    bar.folds_done(len(curves))
    per_call = config.recipe.folds_per_batch or DEFAULT_FOLDS_PER_CALL
    for chunk in fixed_chunks(slots, per_call):
        results = engine.fit_predict(
            config.recipe,
            data.x,
            data.y,
            [(t.train, t.test) for t in chunk],
            data.num_classes,
            chunk[0].seed,
            groups=data.groups,
            progress=bar.epoch,
            output="epochs",
            placement=config.placement,
        )
        for task, curve in zip(chunk, results, strict=True):
            curve = np.asarray(curve, dtype=np.float32)
            write_atomic(folder / f"{task.name}.npy", lambda h, c=curve: np.save(h, c), binary=True)
            curves[task.name] = curve
        bar.folds_done(len(chunk))
    return curves


def _load_curve(path: Path, n_test: int, k: int) -> np.ndarray | None:
    """A saved fold's curve, or None (trained again) when missing, unreadable or misshapen."""
    if not path.is_file():
        return None
    try:
        curve = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return curve if curve.ndim == 3 and curve.shape[1:] == (n_test, k) else None


# ---- the audit -------------------------------------------------------------------------------


def run_audit(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    k: int = 10,
    engine: Engine | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the audit (LOSO scored by every practice, and the k-fold) into `out_dir`; write and
    return audit.json's content.

    The recipe's validation-subject selection is switched off: every figure uses the fixed
    schedule, so the only difference between `loso` and `oracle` is who picks the epoch.
    """
    engine = engine or base.default_engine()
    out_dir = Path(out_dir)
    recipe = dataclasses.replace(config.recipe, val_subjects=0)
    config = dataclasses.replace(config, recipe=recipe, extra_recipes=[])
    check_writable(out_dir)
    if k < 2:
        raise ConfigError(f"--k {k}: the sample-level k-fold protocol needs at least 2 folds")
    seed = config.seeds[0]
    resolve_device(config.device)  # a device this machine lacks: refused before any work
    data = TrainingData.from_config(config, progress)
    if k > len(data.samples):
        raise ConfigError(
            f"--k {k}: more folds than the {len(data.samples)} prepared samples; choose "
            f"--k between 2 and {len(data.samples)}"
        )
    identity = {
        "recipe": recipe.to_dict(),
        "prepare": config.to_dict()["prepare"],
        "data": config.data.name,
        "fingerprint": data.dataset.fingerprint(),
        "k": k,
        "seed": seed,
    }

    def clear() -> None:
        pooled = [name for name, practice in PRACTICES.items() if practice.pooled]
        for name in (*pooled, KFOLD, *CURVE_FOLDERS):
            shutil.rmtree(out_dir / name, ignore_errors=True)

    def changed() -> list[str]:
        return differences(read_yaml(out_dir / IDENTITY_FILE), identity)

    claim_folder(out_dir, IDENTITY_FILE, "audit", changed, clear, overwrite=overwrite)
    write_yaml_atomic(out_dir / IDENTITY_FILE, identity)
    splitters = LeaveOneSubjectOut(), SampleKFold(n_splits=k, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubjectLeakageWarning)  # the CLI says it once
        kfold_overlap = subject_overlap(data.samples, splitters[1])
        protocols = _protocols(engine, config, data, splitters, seed, k, out_dir, progress)
    result = _result(config, data, protocols, kfold_overlap, k)
    document = audit_document(result)
    write_json_atomic(out_dir / AUDIT_FILE, result)
    write_text_atomic(out_dir / AUDIT_MD, document_markdown(document))
    write_text_atomic(out_dir / AUDIT_HTML, document_html(document))
    return result


def _protocols(
    engine: Engine,
    config: ExperimentConfig,
    data: TrainingData,
    splitters: tuple[Splitter, Splitter],
    seed: int,
    k: int,
    out_dir: Path,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """audit.json's protocols: every registered practice on the LOSO curves, then the k-fold."""
    loso, kfold = splitters
    kfold_probs = matching_probabilities(
        _pooled_path(out_dir, KFOLD), data.keys(), data.class_names
    )
    loso_tasks = fold_tasks(data, loso, seed)  # saved curves load; every practice needs them
    kfold_tasks = fold_tasks(data, kfold, seed) if kfold_probs is None else []
    with RunProgress(progress, len(loso_tasks) + len(kfold_tasks)).running() as bar:
        curves = _train_folds(engine, config, data, loso_tasks, out_dir / "loso_epochs", bar)
        if kfold_tasks:
            last = _train_folds(engine, config, data, kfold_tasks, out_dir / "kfold_epochs", bar)
            kfold_probs = _pooled(
                kfold_tasks, {t.name: last[t.name][-1] for t in kfold_tasks}, data
            )
            _save_pooled(_pooled_path(out_dir, KFOLD), kfold_probs, data)
    folds = FoldCurves(
        {t.name: curves[t.name] for t in loso_tasks},
        {t.name: data.y[t.test] for t in loso_tasks},
        {t.name: data.samples[t.test[0]].dataset for t in loso_tasks},
        data.num_classes,
    )
    protocols = {
        name: _practice_row(practice, folds, loso_tasks, data, out_dir)
        for name, practice in PRACTICES.items()
    }
    label = KFOLD_LABEL.replace("k-fold", f"{k}-fold")
    protocols[KFOLD] = {"label": label, "leaking": True, **_pooled_figures(kfold_probs, data)}
    return protocols


def _pooled(
    tasks: Sequence[FoldTask], probs: dict[str, np.ndarray], data: TrainingData
) -> np.ndarray:
    """(n, K) probabilities of all samples from each fold's (n_test, K) test probabilities."""
    pooled = np.zeros((len(data.samples), data.num_classes))
    for task in tasks:
        pooled[task.test] = probs[task.name]
    return pooled


def _pooled_figures(probs: np.ndarray, data: TrainingData) -> dict[str, Any]:
    return headline_figures(run_metrics(data.predictions(probs), data.class_names))


def _practice_row(
    practice: Practice,
    folds: FoldCurves,
    tasks: Sequence[FoldTask],
    data: TrainingData,
    out_dir: Path,
) -> dict[str, Any]:
    """A practice's row of audit.json; a pooled one's predictions (and, when it chose its epochs
    on the test subject, those epochs, counted from 1) are saved in its folder too."""
    row: dict[str, Any] = {"label": practice.label, "leaking": practice.leaking}
    if not practice.pooled:
        return {**row, **practice.averaged(folds)}
    chosen = practice.chosen_epochs(folds)
    probs = _pooled(tasks, {fold: folds.curves[fold][e] for fold, e in chosen.items()}, data)
    _save_pooled(_pooled_path(out_dir, practice.name), probs, data)
    row.update(_pooled_figures(probs, data))
    if practice.leaking:
        epochs = {fold: e + 1 for fold, e in chosen.items()}
        write_json_atomic(out_dir / practice.name / "epochs.json", epochs)
        row["chosen_epochs"] = epochs
        row["mean_chosen_epoch"] = float(np.mean(list(epochs.values()))) if epochs else 0.0
    return row


# ---- figures ---------------------------------------------------------------------------------


def inflation(leaking: dict[str, Any], honest: dict[str, Any]) -> dict[str, Any]:
    """Difference (leaking - honest) of each headline figure, overall and per dataset."""

    def diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
        return {key: a[key] - b[key] for key in SUMMARY_KEYS}

    return {
        "overall": diff(leaking["overall"], honest["overall"]),
        "per_dataset": {
            db: diff(m, honest["per_dataset"][db])
            for db, m in leaking["per_dataset"].items()
            if db in honest["per_dataset"]
        },
    }


def _leakage_section(report: OverlapReport) -> dict[str, Any]:
    return {
        "protocol": report.protocol,
        "summary": report.summary(),
        "n_leaking_folds": len(report.leaking_folds),
        "n_shared_subjects": len({s for f in report.leaking_folds for s in f.shared_subjects}),
        "folds": [
            {
                "fold": f.fold,
                "n_train": f.n_train,
                "n_test": f.n_test,
                "n_test_subjects": len(f.test_subjects),
                "n_shared_subjects": len(f.shared_subjects),
                "shared_subjects": list(f.shared_subjects),
            }
            for f in report.folds
        ],
    }


def _result(
    config: ExperimentConfig,
    data: TrainingData,
    protocols: dict[str, dict[str, Any]],
    kfold_overlap: OverlapReport,
    k: int,
) -> dict[str, Any]:
    return {
        "data": _data_section(data),
        "model": config.recipe.model,
        "recipe": config.recipe.to_dict(),
        "seed": config.seeds[0],
        "k": k,
        "protocols": protocols,
        "inflation": {
            p: inflation(protocols[p], protocols["loso"]) for p in protocols if p != "loso"
        },
        "leakage": _leakage_section(kfold_overlap),
    }
