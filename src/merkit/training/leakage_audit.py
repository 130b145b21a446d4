"""The leakage audit experiment: how much do the field's two common leaks inflate one recipe?

One recipe is trained two ways on the same prepared data (LOSO and a sample-level k-fold) and
scored the ways the field's papers scored (`merkit.evaluation.practices`):

- `loso`: leave-one-subject-out with a fixed schedule, last epoch, pooled (the honest figure);
- `oracle`: the SAME LOSO training, but each fold keeps the epoch that maximises accuracy on its
  own test subject (HTNet, EMR and most published MER code): it peeks at the test subject;
- `subject-mean`: the LOSO last epoch, figures per subject averaged over subjects (ICIP 2024's
  averaging alone: not comparable with pooled figures);
- `subject-best`: per subject its best epoch, averaged over subjects (ICIP 2024's scoring);
- `kfold`: CABM-FMER's sample-level stratified k-fold, where a subject sits in train and test.

The inflation of a leaking figure is its difference from `loso`. Work is saved as it finishes
(LOSO per-epoch probabilities per fold, k-fold predictions per fold, each protocol's pooled
predictions), so rerunning the same audit into the same folder skips what is done.
"""

from __future__ import annotations

import dataclasses
import json
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
from merkit.evaluation.practices import subject_best, subject_mean
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
FIGURES = ("loso", "oracle", "kfold")  # the audit's figures from pooled predictions
PRACTICES = ("subject-mean", "subject-best")  # figures averaged over subjects, from the curves
LABELS = {
    "loso": "LOSO, fixed schedule, last epoch, pooled (honest)",
    "oracle": "LOSO, best epoch chosen on each test subject, pooled (LEAKS: HTNet's, EMR's)",
    "subject-mean": "LOSO, last epoch, figures averaged over subjects (ICIP 2024's averaging)",
    "subject-best": (
        "LOSO, each subject's best epoch, figures averaged over subjects "
        "(LEAKS: ICIP 2024's scoring)"
    ),
    "kfold": "sample-level stratified k-fold, pooled (LEAKS: subjects overlap; CABM-FMER's)",
}
LEAKING = {
    "loso": False,
    "oracle": True,
    "subject-mean": False,
    "subject-best": True,
    "kfold": True,
}
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


def oracle_epoch(curve: np.ndarray, y_test: np.ndarray) -> int:
    """The epoch whose test accuracy is highest (first on ties): the peeking choice."""
    accuracy = (curve.argmax(axis=-1) == y_test[None, :]).mean(axis=1)
    return int(np.argmax(accuracy))


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
    """Run the three protocols of the audit into `out_dir`; write and return audit.json's content.

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
        for name in (*FIGURES, *CURVE_FOLDERS):
            shutil.rmtree(out_dir / name, ignore_errors=True)

    def changed() -> list[str]:
        return differences(read_yaml(out_dir / IDENTITY_FILE), identity)

    claim_folder(out_dir, IDENTITY_FILE, "audit", changed, clear, overwrite=overwrite)
    write_yaml_atomic(out_dir / IDENTITY_FILE, identity)
    loso, kfold = LeaveOneSubjectOut(), SampleKFold(n_splits=k, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubjectLeakageWarning)  # the CLI says it once
        kfold_overlap = subject_overlap(data.samples, kfold)
        probs = _figure_probabilities(engine, config, data, loso, kfold, seed, out_dir, progress)
    result = _result(config, data, probs, kfold_overlap, k)
    document = audit_document(result)
    write_json_atomic(out_dir / AUDIT_FILE, result)
    write_text_atomic(out_dir / AUDIT_MD, document_markdown(document))
    write_text_atomic(out_dir / AUDIT_HTML, document_html(document))
    return result


def _figure_probabilities(
    engine: Engine,
    config: ExperimentConfig,
    data: TrainingData,
    loso: Splitter,
    kfold: Splitter,
    seed: int,
    out_dir: Path,
    progress: bool,
) -> dict[str, Any]:
    """Pooled probabilities of each figure (and the oracle's chosen epochs)."""
    keys, classes = data.keys(), data.class_names
    pooled = {f: matching_probabilities(_pooled_path(out_dir, f), keys, classes) for f in FIGURES}
    epochs_path = out_dir / "oracle" / "epochs.json"
    loso_tasks = fold_tasks(data, loso, seed)  # saved curves load; the practices need them
    kfold_tasks = fold_tasks(data, kfold, seed) if pooled["kfold"] is None else []
    n = len(data.samples), data.num_classes
    with RunProgress(progress, len(loso_tasks) + len(kfold_tasks)).running() as bar:
        curves = _train_folds(engine, config, data, loso_tasks, out_dir / "loso_epochs", bar)
        subject_curves = {t.name: curves[t.name] for t in loso_tasks}
        subject_labels = {t.name: data.y[t.test] for t in loso_tasks}
        subject_db = {t.name: data.samples[t.test[0]].dataset for t in loso_tasks}
        k = data.num_classes
        practices = {
            "subject-mean": subject_mean(subject_curves, subject_labels, subject_db, k),
            "subject-best": subject_best(subject_curves, subject_labels, subject_db, k),
        }
        if any(pooled[p] is None for p in ("loso", "oracle")) or not epochs_path.is_file():
            last, best = np.zeros(n), np.zeros(n)
            chosen = {}
            for task in loso_tasks:
                curve = curves[task.name]
                chosen[task.name] = oracle_epoch(curve, data.y[task.test]) + 1
                last[task.test], best[task.test] = curve[-1], curve[chosen[task.name] - 1]
            _save_pooled(_pooled_path(out_dir, "loso"), last, data)
            _save_pooled(_pooled_path(out_dir, "oracle"), best, data)
            write_json_atomic(epochs_path, chosen)
            pooled["loso"], pooled["oracle"] = last, best
        if kfold_tasks:
            curves = _train_folds(engine, config, data, kfold_tasks, out_dir / "kfold_epochs", bar)
            probs = np.zeros(n)
            for task in kfold_tasks:
                probs[task.test] = curves[task.name][-1]
            _save_pooled(_pooled_path(out_dir, "kfold"), probs, data)
            pooled["kfold"] = probs
    chosen = json.loads(epochs_path.read_text(encoding="utf-8"))
    return {**pooled, "oracle_epochs": chosen, "practices": practices}


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
    probs: dict[str, Any],
    kfold_overlap: OverlapReport,
    k: int,
) -> dict[str, Any]:
    protocols = {}
    for name in LABELS:  # the order of the report's rows
        if name in PRACTICES:
            figures = probs["practices"][name]
        else:
            figures = headline_figures(run_metrics(data.predictions(probs[name]), data.class_names))
        protocols[name] = {"label": LABELS[name], "leaking": LEAKING[name], **figures}
    protocols["kfold"]["label"] = LABELS["kfold"].replace("k-fold", f"{k}-fold")
    epochs = list(probs["oracle_epochs"].values())
    protocols["oracle"]["chosen_epochs"] = probs["oracle_epochs"]
    protocols["oracle"]["mean_chosen_epoch"] = float(np.mean(epochs)) if epochs else 0.0
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
