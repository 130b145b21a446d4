"""A run folder's figures and report, always recomputed from its prediction CSVs.

The runner writes `config.yaml` (resolved config and run metadata) and the pooled prediction
tables; everything here derives `metrics.json`, `confusion.png` and `report.md` from those
files alone, so `merkit report RUN` reproduces exactly what the run wrote.

Multi-seed runs keep one table per seed (`predictions_seed{S}.csv`); `predictions.csv` then holds
the seed ensemble (class probabilities averaged over seeds). The headline figure of a multi-seed
run is the mean and (sample) standard deviation over seeds of each seed's pooled figures.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from merkit.errors import AnnotationError, ConfigError
from merkit.evaluation.metrics import pooled_metrics
from merkit.evaluation.predictions import Predictions, read_predictions
from merkit.io import read_yaml, write_bytes_atomic, write_json_atomic, write_text_atomic

RUN_FILE = "config.yaml"
PREDICTIONS_FILE = "predictions.csv"
METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion.png"
REPORT_FILE = "report.md"
SEED_FILE = "predictions_seed{seed}.csv"
SUMMARY_KEYS = ("uf1", "uar", "accuracy", "macro_precision")
_SEED_RE = re.compile(r"predictions_seed(-?\d+)\.csv$")


# ---- reading a run folder --------------------------------------------------------------------


def read_run_meta(run_dir: str | Path) -> dict[str, Any]:
    """The run's `config.yaml` as a dict; ConfigError when the folder is not a run folder."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no {RUN_FILE}; run `merkit train` first)")
    meta = read_yaml(path)
    if "config" not in meta:
        raise ConfigError(f"{path}: not a merkit run file (expected a 'config' section)")
    return meta


def seed_prediction_files(run_dir: str | Path) -> dict[int, Path]:
    """`predictions_seed{S}.csv` files of a multi-seed run, by seed."""
    found = {}
    for path in Path(run_dir).glob("predictions_seed*.csv"):
        match = _SEED_RE.search(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def read_probabilities(path: str | Path, class_names: Sequence[str]) -> np.ndarray | None:
    """The `p_{class}` columns of a predictions CSV as (N, C) floats, None when absent."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [f"p_{c}" for c in class_names]
        if not set(columns) <= set(reader.fieldnames or []):
            return None
        try:
            return np.asarray([[float(row[c]) for c in columns] for row in reader], np.float64)
        except (TypeError, ValueError):
            raise AnnotationError(f"{path}: a p_ probability cell is not a number") from None


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


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
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
            per_seed[seed] = _summary(pooled_metrics(t, p, class_names, table.dataset))
        metrics["seeds"] = {str(seed): m for seed, m in per_seed.items()}
        metrics["seed_statistics"] = seed_statistics(per_seed)
    return metrics


# ---- confusion matrix plot -------------------------------------------------------------------


def confusion_png(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str
) -> bytes:
    """PNG of the confusion matrix: colour and % row-normalised (recall), counts in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    cm = np.asarray(confusion, dtype=np.int64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
    size = 1.6 + 1.1 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    try:
        image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
        ticks = np.arange(len(class_names))
        ax.set_xticks(ticks, labels=list(class_names), rotation=30, ha="right")
        ax.set_yticks(ticks, labels=list(class_names))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        for i, j in np.ndindex(cm.shape):
            colour = "white" if norm[i, j] > 0.5 else "black"
            text = f"{cm[i, j]}\n{100 * norm[i, j]:.1f}%"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120)
    finally:
        plt.close(fig)
    return buffer.getvalue()


# ---- Markdown --------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _metric_rows(metrics: dict[str, Any]) -> list[list[str]]:
    scopes = [("overall", metrics["overall"]), *metrics["per_dataset"].items()]
    return [[scope, str(m["n"]), *(_fmt(m[k]) for k in SUMMARY_KEYS)] for scope, m in scopes]


def _seed_rows(stats: dict[str, Any]) -> list[list[str]]:
    scopes = [("overall", stats["overall"]), *stats["per_dataset"].items()]
    return [
        [scope, *(f"{m[k]['mean']:.4f} ± {m[k]['std']:.4f}" for k in SUMMARY_KEYS)]
        for scope, m in scopes
    ]


def _metadata_lines(meta: dict[str, Any]) -> list[str]:
    config, run = meta.get("config", {}), meta.get("run", {})
    data, protocol = meta.get("data", {}), meta.get("protocol", {})
    recipe = config.get("recipe", {})
    extras = [r.get("model", "?") for r in config.get("extra_recipes", [])]
    model = " + ".join([recipe.get("model", "?"), *extras])
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    items = [
        ("dataset", f"{data.get('name', '?')} ({data.get('root', '?')})"),
        (
            "samples",
            f"{data.get('n_used', '?')} used of {data.get('n_samples', '?')} loaded; "
            f"{data.get('n_subjects', '?')} subjects",
        ),
        ("classes", ", ".join(data.get("class_names", []))),
        ("data fingerprint", data.get("fingerprint", "?")),
        ("protocol", f"{protocol.get('description', '?')}, {protocol.get('n_folds', '?')} folds"),
        ("model", model),
        (
            "recipe",
            f"{recipe.get('epochs', '?')} epochs, batch {recipe.get('batch_size', '?')}, "
            f"{recipe.get('optimizer', '?')} lr {recipe.get('lr', '?')}, "
            f"{recipe.get('schedule', '?')} schedule, ensemble {recipe.get('ensemble', '?')}, "
            f"validation subjects {recipe.get('val_subjects', '?')}",
        ),
        ("seeds", ", ".join(str(s) for s in config.get("seeds", []))),
        ("started / finished", f"{run.get('started_at', '?')} / {run.get('finished_at', '?')}"),
        ("versions", versions or "?"),
        ("git commit", meta.get("git_commit") or "unknown"),
    ]
    return [f"- **{key}**: {value}" for key, value in items]


def _protocol_lines(meta: dict[str, Any]) -> list[str]:
    protocol = meta.get("protocol", {})
    lines = ["## Protocol and leakage", ""]
    if protocol.get("subject_independent", True) and not protocol.get("leaking_subjects"):
        lines.append(
            f"{protocol.get('description', 'the protocol')} is subject-independent: no subject "
            "has samples in both the training and the test side of any fold "
            f"({protocol.get('leakage', 'audited')}). Figures are computed once on the pooled "
            "predictions of all folds; the held-out subjects chose no epoch, checkpoint or "
            "hyper-parameter."
        )
    else:
        shared = protocol.get("leaking_subjects", [])
        lines.append(
            f"**Warning: subject leakage.** {protocol.get('leakage', '')}. "
            f"{len(shared)} subjects appear in both train and test, so these figures are "
            "inflated and NOT comparable with subject-independent (LOSO) results."
        )
        if shared:
            lines += ["", "Subjects on both sides: " + ", ".join(shared)]
    failed = meta.get("data", {}).get("failed", [])
    if failed:
        lines += ["", f"{len(failed)} samples could not be prepared and were left out:"]
        lines += [f"- {item['sample']}: {item['reason']}" for item in failed]
    return lines


def render_markdown(meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The run's Markdown report: metadata, metric tables, per class, per subject, protocol."""
    name = meta.get("run", {}).get("name", "run")
    header = ("scope", "n", "UF1", "UAR", "accuracy", "macro precision")
    lines = [f"# merkit run: {name}", "", *_metadata_lines(meta), ""]
    stats = metrics.get("seed_statistics")
    if stats:
        lines += [
            f"## Results over {stats['n_seeds']} seeds (mean ± std)",
            "",
            *_table(("scope", "UF1", "UAR", "accuracy", "macro precision"), _seed_rows(stats)),
            "",
            "## Seed ensemble (class probabilities averaged over seeds)",
            "",
        ]
    else:
        lines += ["## Results (pooled over all folds)", ""]
    lines += [*_table(header, _metric_rows(metrics)), ""]
    if stats:
        lines += ["### Each seed", ""]
        rows = [
            [seed, *(_fmt(m["overall"][k]) for k in SUMMARY_KEYS)]
            for seed, m in metrics["seeds"].items()
        ]
        lines += [*_table(("seed", "UF1", "UAR", "accuracy", "macro precision"), rows), ""]
    per_class = metrics["overall"]["per_class"]
    rows = [
        [c, m["support"], _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"])]
        for c, m in per_class.items()
    ]
    lines += ["## Per class", "", *_table(("class", "support", "precision", "recall", "F1"), rows)]
    lines += ["", f"![confusion matrix]({CONFUSION_FILE})", ""]
    rows = [
        [key, m["n"], m["correct"], _fmt(m["accuracy"])]
        for key, m in metrics["per_subject"].items()
    ]
    lines += ["## Per subject", "", *_table(("subject", "n", "correct", "accuracy"), rows), ""]
    lines += [*_protocol_lines(meta), ""]
    return "\n".join(lines)


# ---- writing ---------------------------------------------------------------------------------


def render_run(run_dir: str | Path) -> dict[str, Any]:
    """(Re)write metrics.json, confusion.png and report.md of a run folder; return the metrics."""
    run_dir = Path(run_dir)
    meta = read_run_meta(run_dir)
    class_names = meta.get("data", {}).get("class_names")
    if not class_names:
        raise ConfigError(f"{run_dir / RUN_FILE}: no data.class_names recorded")
    if not (run_dir / PREDICTIONS_FILE).is_file():
        raise ConfigError(
            f"{run_dir}: the run has not finished (no {PREDICTIONS_FILE}); rerun the same "
            "`merkit train` command to resume it"
        )
    predictions = read_predictions(run_dir / PREDICTIONS_FILE)
    seeds = {s: read_predictions(p) for s, p in seed_prediction_files(run_dir).items()}
    metrics = run_metrics(predictions, class_names, seeds)
    write_json_atomic(run_dir / METRICS_FILE, metrics)
    title = f"{meta.get('run', {}).get('name', run_dir.name)} (n={metrics['overall']['n']})"
    if "seed_statistics" in metrics:
        title += f", ensemble of {metrics['seed_statistics']['n_seeds']} seeds"
    png = confusion_png(metrics["overall"]["confusion"], class_names, title)
    write_bytes_atomic(run_dir / CONFUSION_FILE, png)
    write_text_atomic(run_dir / REPORT_FILE, render_markdown(meta, metrics))
    return metrics
