"""A run folder's figures and report, always recomputed from its prediction CSVs.

The runner writes `config.yaml` (resolved config and run metadata) and the pooled prediction
tables; everything here derives `metrics.json`, `confusion.png` and the report from those files
alone, so `merkit report RUN` reproduces exactly what the run wrote. The report is one document
(`merkit.evaluation.document`) written as `report.md` and as the self-contained `report.html`.
Training curves are drawn when the run folder holds per-epoch series (`curves.json` or
`curves.csv`).

Multi-seed runs keep one table per seed (`predictions_seed{S}.csv`); `predictions.csv` then holds
the mean over seeds (class probabilities averaged over seeds). The headline figure of a multi-seed
run is the mean and (sample) standard deviation over seeds of each seed's pooled figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from merkit.errors import ConfigError
from merkit.evaluation.auxiliary import AUX_HEADER
from merkit.evaluation.document import (
    Bullets,
    Document,
    Facts,
    Heading,
    Image,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from merkit.evaluation.figures import confusion_png, curves_png
from merkit.evaluation.metrics import pooled_metrics
from merkit.evaluation.predictions import Predictions
from merkit.evaluation.run_folder import (
    CONFUSION_FILE,
    CURVES_PNG,
    HTML_FILE,
    METRICS_FILE,
    REPORT_FILE,
    RunFolder,
)
from merkit.evaluation.run_meta import RunMeta
from merkit.io import check_writable, write_bytes_atomic, write_json_atomic, write_text_atomic

SUMMARY_KEYS = ("uf1", "uar", "accuracy", "macro_precision")


# ---- figures ---------------------------------------------------------------------------------


def per_subject_accuracy(
    predictions: Predictions, y_true: np.ndarray, y_pred: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Accuracy of each subject's samples (key `dataset/subject`), in first-seen order."""
    keys = [f"{d}/{s}" for d, s in zip(predictions.dataset, predictions.subject, strict=True)]
    result: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(keys):
        mask = np.asarray([k == key for k in keys])
        correct = int((y_true[mask] == y_pred[mask]).sum())
        result[key] = {"n": int(mask.sum()), "correct": correct, "accuracy": correct / mask.sum()}
    return result


def headline_figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """Headline figures of one pooled_metrics result (no per-class detail)."""

    def pick(m: dict[str, Any]) -> dict[str, Any]:
        return {"n": m["n"], **{k: m[k] for k in SUMMARY_KEYS}}

    return {
        "overall": pick(metrics["overall"]),
        "per_dataset": {db: pick(m) for db, m in metrics["per_dataset"].items()},
    }


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std}


def seed_statistics(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std over seeds of each headline figure, overall and per dataset."""
    seeds = list(per_seed.values())
    datasets = list(dict.fromkeys(db for s in seeds for db in s["per_dataset"]))
    return {
        "n_seeds": len(seeds),
        "overall": {k: _mean_std([s["overall"][k] for s in seeds]) for k in SUMMARY_KEYS},
        "per_dataset": {
            db: {
                k: _mean_std([s["per_dataset"][db][k] for s in seeds if db in s["per_dataset"]])
                for k in SUMMARY_KEYS
            }
            for db in datasets
        },
    }


def run_metrics(
    predictions: Predictions,
    class_names: Sequence[str],
    seed_predictions: dict[int, Predictions] | None = None,
) -> dict[str, Any]:
    """metrics.json content: pooled figures of `predictions`, per subject, and per seed."""
    y_true, y_pred = predictions.encode(class_names)
    metrics: dict[str, Any] = {"class_names": list(class_names)}
    metrics.update(pooled_metrics(y_true, y_pred, class_names, predictions.dataset))
    metrics["per_subject"] = per_subject_accuracy(predictions, y_true, y_pred)
    if seed_predictions and len(seed_predictions) > 1:
        per_seed = {}
        for seed, table in seed_predictions.items():
            t, p = table.encode(class_names)
            per_seed[seed] = headline_figures(pooled_metrics(t, p, class_names, table.dataset))
        metrics["seeds"] = {str(seed): m for seed, m in per_seed.items()}
        metrics["seed_statistics"] = seed_statistics(per_seed)
    return metrics


# ---- the report ------------------------------------------------------------------------------


def fmt(value: float) -> str:
    return f"{value:.4f}"


def _known(value: object) -> str:
    """A recorded value, or "?" where the run file lacks it."""
    return "?" if value is None else str(value)


def metric_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """One row per scope; WF1 as "?" in metrics computed before it was added."""
    scopes = [("overall", metrics["overall"]), *metrics["per_dataset"].items()]
    keys = ("uf1", "uar", "accuracy", "wf1", "macro_precision")
    return [
        [scope, str(m["n"]), *(fmt(m[k]) if k in m else "?" for k in keys)] for scope, m in scopes
    ]


def seed_rows(stats: dict[str, Any]) -> list[list[str]]:
    scopes = [("overall", stats["overall"]), *stats["per_dataset"].items()]
    return [
        [scope, *(f"{m[k]['mean']:.4f} ± {m[k]['std']:.4f}" for k in SUMMARY_KEYS)]
        for scope, m in scopes
    ]


def when_text(stamp: str | None) -> str:
    """A recorded ISO 8601 time as a person reads it ("2025-05-01 14:03 UTC"); a value that is
    not one is shown as it is, a missing one as "?"."""
    if stamp is None:
        return "?"
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if moment.tzinfo is None:
        return f"{moment:%Y-%m-%d %H:%M}"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"  # every run's time in one zone


def run_date(meta: RunMeta) -> str:
    """When the run finished (else when it started), as a person reads it."""
    return when_text(meta.run.finished_at or meta.run.started_at)


def run_summary(meta: RunMeta) -> str:
    """The run in one sentence: which model, on which data, under which protocol, and when."""
    data = meta.data
    samples = f"{data.n_used} samples, " if data.n_used is not None else ""
    subjects = f"{data.n_subjects} subjects, " if data.n_subjects is not None else ""
    return (
        f"{meta.model_label} on {_known(data.name)} ({samples}{subjects}"
        f"{len(data.class_names)} classes), {_known(meta.protocol.description)}; "
        f"finished {run_date(meta)}."
    )


def landmark_text(counts: dict[str, int]) -> str:
    """How the facial points of a region mosaic were found, e.g. for the detection rate."""
    total = sum(counts.values())
    return (
        f"{counts.get('detected', 0)} of {total} samples from a detected face, "
        f"{counts.get('face-box', 0)} with the whole apex image as the face box, "
        f"{counts.get('fallback', 0)} with HTNet's fallback points"
    )


def metadata_items(meta: RunMeta) -> list[tuple[str, str]]:
    """(key, value) lines describing a run: data, protocol, model, recipe, seeds, versions."""
    data, protocol, run, recipe = meta.data, meta.protocol, meta.run, meta.recipe
    weights = meta.config.get("weights")
    versions = ", ".join(f"{k} {v}" for k, v in meta.versions.items())
    points = [("facial points", landmark_text(data.landmarks))] if data.landmarks else []
    return points + [
        ("dataset", f"{_known(data.name)} ({_known(data.root)})"),
        (
            "samples",
            f"{_known(data.n_used)} used of {_known(data.n_samples)} loaded; "
            f"{_known(data.n_subjects)} subjects",
        ),
        ("classes", ", ".join(data.class_names)),
        ("data fingerprint", _known(data.fingerprint)),
        ("protocol", f"{_known(protocol.description)}, {_known(protocol.n_folds)} folds"),
        ("model", meta.model_label),
        *(_weights_items(weights) if weights else _recipe_items(recipe, meta.config)),
        ("started / finished", f"{when_text(run.started_at)} / {when_text(run.finished_at)}"),
        ("computed on", _known(meta.determinism.get("device"))),
        ("versions", versions or "?"),
        ("git commit", meta.git_commit or "unknown"),
    ]


def _recipe_items(recipe: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("recipe", _recipe_text(recipe)),
        ("model settings", _settings(recipe.get("model_kwargs") or {})),
        ("regularisation", _regularisation(recipe)),
        ("augmentation", _settings(recipe.get("augment") or {})),
        ("seeds", ", ".join(str(s) for s in config.get("seeds", []))),
    ]


def _weights_items(weights: dict[str, Any]) -> list[tuple[str, str]]:
    """A run of imported per-fold weights (`merkit evaluate`): nothing was trained."""
    origin, convention = weights.get("origin") or {}, weights.get("input_convention") or {}
    return [
        (
            "weights",
            f"{_known(origin.get('source'))}; one checkpoint per fold in "
            f"{_known(weights.get('folds_dir'))}",
        ),
        ("input convention", _known(convention.get("description")) if convention else "merkit's"),
    ]


def _recipe_text(recipe: dict[str, Any]) -> str:
    def get(key: str) -> str:
        return _known(recipe.get(key))

    return (
        f"{get('epochs')} epochs, batch {get('batch_size')}, {get('optimizer')} lr {get('lr')}, "
        f"{get('schedule')} schedule, seed members {get('seed_members')}, "
        f"validation subjects {get('val_subjects')}"
    )


def _settings(values: dict[str, Any]) -> str:
    """`key value` pairs (a bare key for a switch that is on), leaving out switched-off options
    (False, 0, empty), or "none"."""
    on = {k: v for k, v in values.items() if v not in (False, 0, 0.0, None, "")}
    kept = [k if v is True else f"{k} {v}" for k, v in on.items()]
    return ", ".join(kept) or "none"


def _regularisation(recipe: dict[str, Any]) -> str:
    """The recipe's loss and optimisation extras that shape its figures."""
    return _settings(
        {
            "weight decay": recipe.get("weight_decay"),
            "warmup epochs": recipe.get("warmup_epochs"),
            "label smoothing": recipe.get("label_smoothing"),
            "class-weighted loss": bool(recipe.get("class_weighted")),
            "test-time flip": bool(recipe.get("tta_flip")),
            "weight average decay": recipe.get("ema"),
            "sharpness-aware radius": recipe.get("sam"),
        }
    )


def protocol_text(meta: RunMeta) -> str:
    """One paragraph on the protocol: subject-independent, or a leakage warning (plain text)."""
    protocol = meta.protocol
    if not meta.leaking:
        return (
            f"{protocol.description or 'the protocol'} is subject-independent: no subject "
            "has samples in both the training and the test side of any fold "
            f"({protocol.leakage or 'audited'}). Figures are computed once on the pooled "
            "predictions of all folds; the held-out subjects chose no epoch, checkpoint or "
            "hyper-parameter."
        )
    return (
        f"{protocol.leakage or ''}. {len(protocol.leaking_subjects)} subjects appear in both "
        "train and test, so these figures are inflated and NOT comparable with "
        "subject-independent (LOSO) results."
    )


def _protocol_blocks(meta: RunMeta) -> list[Any]:
    blocks: list[Any] = [Heading("Protocol and leakage")]
    if meta.leaking:
        blocks.append(Paragraph(protocol_text(meta), "warning", "Warning: subject leakage."))
        if meta.protocol.leaking_subjects:
            shared = ", ".join(meta.protocol.leaking_subjects)
            blocks.append(Paragraph("Subjects on both sides: " + shared))
    else:
        blocks.append(Paragraph(protocol_text(meta), "ok"))
    failed = meta.data.failed
    if failed:
        blocks.append(Paragraph(f"{len(failed)} samples could not be prepared and were left out:"))
        blocks.append(Bullets([f"{item['sample']}: {item['reason']}" for item in failed]))
    return blocks


def per_class_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    return [
        [c, m["support"], fmt(m["precision"]), fmt(m["recall"]), fmt(m["f1"])]
        for c, m in metrics["overall"]["per_class"].items()
    ]


def per_subject_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    return [
        [key, m["n"], m["correct"], fmt(m["accuracy"])] for key, m in metrics["per_subject"].items()
    ]


def seed_each_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    return [
        [seed, *(fmt(m["overall"][k]) for k in SUMMARY_KEYS)]
        for seed, m in metrics["seeds"].items()
    ]


METRIC_HEADER = ("scope", "n", "UF1", "UAR", "accuracy (WAR)", "WF1", "macro precision")
SEED_STAT_HEADER = ("scope", "UF1", "UAR", "accuracy", "macro precision")
SEED_HEADER = ("seed", "UF1", "UAR", "accuracy", "macro precision")
PER_CLASS_HEADER = ("class", "support", "precision", "recall", "F1")
PER_SUBJECT_HEADER = ("subject", "n", "correct", "accuracy")


def aux_rows(aux: dict[str, Any]) -> list[list[str]]:
    """Rows of a run's auxiliary figures (`aux_metrics.json`): values to 4 decimals."""
    return [
        [fmt(float(row[key])) if key == "value" else str(row[key]) for key in AUX_HEADER]
        for row in aux["rows"]
    ]


def run_document(
    meta: RunMeta,
    metrics: dict[str, Any],
    confusion: bytes,
    curves: bytes | None = None,
    aux: dict[str, Any] | None = None,
) -> Document:
    """The run's report: metadata, metric tables, per class, curves, auxiliary outputs' figures,
    subjects, protocol."""
    document = Document(
        f"merkit run: {meta.run.name or 'run'}",
        [Paragraph(run_summary(meta), "lead"), Facts(metadata_items(meta))],
    )
    stats = metrics.get("seed_statistics")
    if stats:
        document.add(
            Heading(f"Results over {stats['n_seeds']} seeds (mean ± std)"),
            Table(SEED_STAT_HEADER, seed_rows(stats)),
            Heading("Mean over seeds (class probabilities averaged over seeds)"),
        )
    else:
        document.add(Heading("Results (pooled over all folds)"))
    document.add(Table(METRIC_HEADER, metric_rows(metrics)))
    if stats:
        document.add(Heading("Each seed", 3), Table(SEED_HEADER, seed_each_rows(metrics)))
    document.add(
        Heading("Per class"),
        Table(PER_CLASS_HEADER, per_class_rows(metrics)),
        Image(confusion, "confusion matrix", CONFUSION_FILE),
    )
    if curves:
        document.add(Heading("Training curves"), Image(curves, "training curves", CURVES_PNG))
    if aux:
        document.add(
            Heading("Auxiliary outputs"),
            Paragraph(str(aux.get("note", ""))),
            Table(AUX_HEADER, aux_rows(aux), text_columns=2),
        )
    document.add(Heading("Per subject"), Table(PER_SUBJECT_HEADER, per_subject_rows(metrics)))
    return document.add(*_protocol_blocks(meta))


# ---- writing ---------------------------------------------------------------------------------


def load_run(run_dir: str | Path) -> tuple[RunMeta, dict[str, Any]]:
    """A finished run's metadata and metrics, recomputed from its prediction CSVs."""
    folder = RunFolder(run_dir)
    meta = folder.read_meta()
    if not meta.data.class_names:
        raise ConfigError(f"{folder.path / 'config.yaml'}: no data.class_names recorded")
    predictions, seeds = folder.read_predictions()
    return meta, run_metrics(predictions, meta.data.class_names, seeds)


def render_run(run_dir: str | Path) -> dict[str, Any]:
    """(Re)write metrics.json, confusion.png, report.md, report.html (and curves.png)."""
    folder = RunFolder(run_dir)
    meta, metrics = load_run(run_dir)
    check_writable(folder.path)
    class_names = metrics["class_names"]
    write_json_atomic(folder / METRICS_FILE, metrics)
    title = f"{meta.run.name or folder.path.name} (n={metrics['overall']['n']})"
    if "seed_statistics" in metrics:
        title += f", probabilities averaged over {metrics['seed_statistics']['n_seeds']} seeds"
    png = confusion_png(metrics["overall"]["confusion"], class_names, title)
    write_bytes_atomic(folder / CONFUSION_FILE, png)
    curves = folder.read_curves()
    curve_png = curves_png(curves, "training curves") if curves else None
    if curve_png:
        write_bytes_atomic(folder / CURVES_PNG, curve_png)
    document = run_document(meta, metrics, png, curve_png, folder.read_aux())
    write_text_atomic(folder / REPORT_FILE, to_markdown(document))
    write_text_atomic(folder / HTML_FILE, to_html(document))
    return metrics
