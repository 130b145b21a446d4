"""A run folder's figures and report, always recomputed from its prediction CSVs.

The runner writes `config.yaml` (resolved config and run metadata) and the pooled prediction
tables; everything here derives `metrics.json`, `confusion.png` and `report.md` from those
files alone, so `merkit report RUN` reproduces exactly what the run wrote. `report.html` holds
the same content as one self-contained page (see `merkit.evaluation.html`). Training curves are
drawn when the run folder holds per-epoch series (`curves.json` or `curves.csv`). Several runs
are compared side by side (`comparison.md/.html/.json`), subject-leaking protocols marked.

Multi-seed runs keep one table per seed (`predictions_seed{S}.csv`); `predictions.csv` then holds
the seed ensemble (class probabilities averaged over seeds). The headline figure of a multi-seed
run is the mean and (sample) standard deviation over seeds of each seed's pooled figures.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from merkit.errors import AnnotationError, ConfigError
from merkit.evaluation import html
from merkit.evaluation.metrics import pooled_metrics
from merkit.evaluation.predictions import Predictions, read_predictions
from merkit.io import read_yaml, write_bytes_atomic, write_json_atomic, write_text_atomic

RUN_FILE = "config.yaml"
PREDICTIONS_FILE = "predictions.csv"
METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion.png"
REPORT_FILE = "report.md"
HTML_FILE = "report.html"
CURVES_JSON = "curves.json"
CURVES_CSV = "curves.csv"
CURVES_PNG = "curves.png"
COMPARISON_FILE = "comparison.{ext}"
LEAK_MARK = "⚠ leaks subjects"
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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def metric_rows(metrics: dict[str, Any]) -> list[list[str]]:
    scopes = [("overall", metrics["overall"]), *metrics["per_dataset"].items()]
    return [[scope, str(m["n"]), *(_fmt(m[k]) for k in SUMMARY_KEYS)] for scope, m in scopes]


def seed_rows(stats: dict[str, Any]) -> list[list[str]]:
    scopes = [("overall", stats["overall"]), *stats["per_dataset"].items()]
    return [
        [scope, *(f"{m[k]['mean']:.4f} ± {m[k]['std']:.4f}" for k in SUMMARY_KEYS)]
        for scope, m in scopes
    ]


def landmark_text(counts: dict[str, int]) -> str:
    """How the facial points of a region mosaic were found, e.g. for the detection rate."""
    total = sum(counts.values())
    return (
        f"{counts.get('detected', 0)} of {total} samples from a detected face, "
        f"{counts.get('face-box', 0)} with the whole apex image as the face box, "
        f"{counts.get('fallback', 0)} with HTNet's fallback points"
    )


def metadata_items(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, value) lines describing a run: data, protocol, model, recipe, seeds, versions."""
    config, run = meta.get("config", {}), meta.get("run", {})
    data, protocol = meta.get("data", {}), meta.get("protocol", {})
    recipe = config.get("recipe", {})
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    landmarks = data.get("landmarks")
    points = [("facial points", landmark_text(landmarks))] if landmarks else []
    return points + [
        ("dataset", f"{data.get('name', '?')} ({data.get('root', '?')})"),
        (
            "samples",
            f"{data.get('n_used', '?')} used of {data.get('n_samples', '?')} loaded; "
            f"{data.get('n_subjects', '?')} subjects",
        ),
        ("classes", ", ".join(data.get("class_names", []))),
        ("data fingerprint", data.get("fingerprint", "?")),
        ("protocol", f"{protocol.get('description', '?')}, {protocol.get('n_folds', '?')} folds"),
        ("model", model_label(meta)),
        (
            "recipe",
            f"{recipe.get('epochs', '?')} epochs, batch {recipe.get('batch_size', '?')}, "
            f"{recipe.get('optimizer', '?')} lr {recipe.get('lr', '?')}, "
            f"{recipe.get('schedule', '?')} schedule, ensemble {recipe.get('ensemble', '?')}, "
            f"validation subjects {recipe.get('val_subjects', '?')}",
        ),
        ("model settings", _settings(recipe.get("model_kwargs") or {})),
        ("regularisation", _regularisation(recipe)),
        ("augmentation", _settings(recipe.get("augment") or {})),
        ("seeds", ", ".join(str(s) for s in config.get("seeds", []))),
        ("started / finished", f"{run.get('started_at', '?')} / {run.get('finished_at', '?')}"),
        ("versions", versions or "?"),
        ("git commit", meta.get("git_commit") or "unknown"),
    ]


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


def model_label(meta: dict[str, Any]) -> str:
    """The run's model, with ensembled extra models joined by `+`."""
    config = meta.get("config", {})
    extras = [r.get("model", "?") for r in config.get("extra_recipes", [])]
    return " + ".join([config.get("recipe", {}).get("model", "?"), *extras])


def is_leaking(meta: dict[str, Any]) -> bool:
    """Whether the run's protocol put one subject in both train and test."""
    protocol = meta.get("protocol", {})
    return not protocol.get("subject_independent", True) or bool(protocol.get("leaking_subjects"))


def protocol_text(meta: dict[str, Any]) -> str:
    """One paragraph on the protocol: subject-independent, or a leakage warning (plain text)."""
    protocol = meta.get("protocol", {})
    if not is_leaking(meta):
        return (
            f"{protocol.get('description', 'the protocol')} is subject-independent: no subject "
            "has samples in both the training and the test side of any fold "
            f"({protocol.get('leakage', 'audited')}). Figures are computed once on the pooled "
            "predictions of all folds; the held-out subjects chose no epoch, checkpoint or "
            "hyper-parameter."
        )
    shared = protocol.get("leaking_subjects", [])
    return (
        f"{protocol.get('leakage', '')}. {len(shared)} subjects appear in both train and test, "
        "so these figures are inflated and NOT comparable with subject-independent (LOSO) "
        "results."
    )


def _protocol_lines(meta: dict[str, Any]) -> list[str]:
    lines = ["## Protocol and leakage", ""]
    if not is_leaking(meta):
        lines.append(protocol_text(meta))
    else:
        shared = meta.get("protocol", {}).get("leaking_subjects", [])
        lines.append(f"**Warning: subject leakage.** {protocol_text(meta)}")
        if shared:
            lines += ["", "Subjects on both sides: " + ", ".join(shared)]
    failed = meta.get("data", {}).get("failed", [])
    if failed:
        lines += ["", f"{len(failed)} samples could not be prepared and were left out:"]
        lines += [f"- {item['sample']}: {item['reason']}" for item in failed]
    return lines


def per_class_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    return [
        [c, m["support"], _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"])]
        for c, m in metrics["overall"]["per_class"].items()
    ]


def per_subject_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    return [
        [key, m["n"], m["correct"], _fmt(m["accuracy"])]
        for key, m in metrics["per_subject"].items()
    ]


def seed_each_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    return [
        [seed, *(_fmt(m["overall"][k]) for k in SUMMARY_KEYS)]
        for seed, m in metrics["seeds"].items()
    ]


METRIC_HEADER = ("scope", "n", "UF1", "UAR", "accuracy", "macro precision")
SEED_STAT_HEADER = ("scope", "UF1", "UAR", "accuracy", "macro precision")
SEED_HEADER = ("seed", "UF1", "UAR", "accuracy", "macro precision")
PER_CLASS_HEADER = ("class", "support", "precision", "recall", "F1")
PER_SUBJECT_HEADER = ("subject", "n", "correct", "accuracy")


def render_markdown(
    meta: dict[str, Any], metrics: dict[str, Any], curves: dict[str, list[float]] | None = None
) -> str:
    """The run's Markdown report: metadata, metric tables, per class, curves, subjects, protocol."""
    name = meta.get("run", {}).get("name", "run")
    lines = [f"# merkit run: {name}", ""]
    lines += [f"- **{key}**: {value}" for key, value in metadata_items(meta)]
    lines.append("")
    stats = metrics.get("seed_statistics")
    if stats:
        lines += [
            f"## Results over {stats['n_seeds']} seeds (mean ± std)",
            "",
            *markdown_table(SEED_STAT_HEADER, seed_rows(stats)),
            "",
            "## Seed ensemble (class probabilities averaged over seeds)",
            "",
        ]
    else:
        lines += ["## Results (pooled over all folds)", ""]
    lines += [*markdown_table(METRIC_HEADER, metric_rows(metrics)), ""]
    if stats:
        lines += ["### Each seed", "", *markdown_table(SEED_HEADER, seed_each_rows(metrics)), ""]
    lines += ["## Per class", "", *markdown_table(PER_CLASS_HEADER, per_class_rows(metrics))]
    lines += ["", f"![confusion matrix]({CONFUSION_FILE})", ""]
    if curves:
        lines += ["## Training curves", "", f"![training curves]({CURVES_PNG})", ""]
    lines += ["## Per subject", "", *markdown_table(PER_SUBJECT_HEADER, per_subject_rows(metrics))]
    lines += ["", *_protocol_lines(meta), ""]
    return "\n".join(lines)


# ---- HTML ------------------------------------------------------------------------------------


def _protocol_html(meta: dict[str, Any]) -> list[str]:
    parts = [html.heading("Protocol and leakage")]
    if is_leaking(meta):
        parts.append(html.paragraph(f"Warning: subject leakage. {protocol_text(meta)}", "warning"))
        shared = meta.get("protocol", {}).get("leaking_subjects", [])
        if shared:
            parts.append(html.paragraph("Subjects on both sides: " + ", ".join(shared)))
    else:
        parts.append(html.paragraph(protocol_text(meta), "ok"))
    failed = meta.get("data", {}).get("failed", [])
    if failed:
        parts.append(
            html.paragraph(f"{len(failed)} samples could not be prepared and were left out:")
        )
        parts.append(html.bullet_list([f"{item['sample']}: {item['reason']}" for item in failed]))
    return parts


def render_run_html(
    meta: dict[str, Any],
    metrics: dict[str, Any],
    confusion: bytes,
    curves: bytes | None = None,
) -> str:
    """report.html: the Markdown report's content as one self-contained page."""
    name = meta.get("run", {}).get("name", "run")
    body = [html.definition_list(metadata_items(meta))]
    stats = metrics.get("seed_statistics")
    if stats:
        body += [
            html.heading(f"Results over {stats['n_seeds']} seeds (mean ± std)"),
            html.table(SEED_STAT_HEADER, seed_rows(stats)),
            html.heading("Seed ensemble (class probabilities averaged over seeds)"),
        ]
    else:
        body.append(html.heading("Results (pooled over all folds)"))
    body.append(html.table(METRIC_HEADER, metric_rows(metrics)))
    if stats:
        body += [html.heading("Each seed", 3), html.table(SEED_HEADER, seed_each_rows(metrics))]
    body += [
        html.heading("Per class"),
        html.table(PER_CLASS_HEADER, per_class_rows(metrics)),
        html.image(confusion, "confusion matrix"),
    ]
    if curves:
        body += [html.heading("Training curves"), html.image(curves, "training curves")]
    body += [html.heading("Per subject"), html.table(PER_SUBJECT_HEADER, per_subject_rows(metrics))]
    body += _protocol_html(meta)
    return html.page(f"merkit run: {name}", body)


def render_comparison_html(entries: Sequence[dict[str, Any]]) -> str:
    """comparison.html: the runs side by side; leaking protocols shaded and marked."""
    header, rows = comparison_table(entries)
    body = [html.table(header, rows, [e["leaking"] for e in entries], text_columns=3)]
    if any(e["leaking"] for e in entries):
        body.append(html.paragraph(LEAK_NOTE, "warning"))
    body.append(html.bullet_list([f"{e['name']}: {e['run']}" for e in entries]))
    return html.page(f"merkit comparison of {len(entries)} runs", body)


# ---- training curves -------------------------------------------------------------------------


def read_curves(run_dir: str | Path) -> dict[str, list[float]] | None:
    """Per-epoch series of a run folder (`curves.json` or `curves.csv`), None when absent.

    `curves.json`: {"series_name": [value per epoch], ...}. `curves.csv`: a header row
    `epoch,series_name,...` then one row per epoch. Empty cells are missing values (NaN).
    """
    run_dir = Path(run_dir)
    if (run_dir / CURVES_JSON).is_file():
        path = run_dir / CURVES_JSON
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise AnnotationError(f"{path}: expected a mapping of series name to per-epoch values")
        series = data
    elif (run_dir / CURVES_CSV).is_file():
        path = run_dir / CURVES_CSV
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        names = [c for c in (rows[0].keys() if rows else []) if c != "epoch"]
        series = {name: [row[name] for row in rows] for name in names}
    else:
        return None
    try:
        return {
            str(k): [float("nan") if v in ("", None) else float(v) for v in values]
            for k, values in series.items()
        }
    except (TypeError, ValueError):
        raise AnnotationError(f"{path}: a curve value is not a number") from None


def curves_png(curves: dict[str, list[float]], title: str) -> bytes:
    """PNG of the per-epoch series: losses on the left axis, other series on the right one."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    try:
        right = None
        for name, values in curves.items():
            epochs = np.arange(1, len(values) + 1)
            if "loss" in name:
                ax.plot(epochs, values, label=name)
            else:
                right = right or ax.twinx()
                right.plot(
                    epochs, values, linestyle="--", label=name, color=f"C{len(right.lines) + 5}"
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(title)
        handles = [*ax.get_lines(), *(right.get_lines() if right else [])]
        ax.legend(handles, [h.get_label() for h in handles], fontsize=8)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    return buffer.getvalue()


# ---- writing ---------------------------------------------------------------------------------


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished run's metadata and metrics, recomputed from its prediction CSVs."""
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
    return meta, run_metrics(predictions, class_names, seeds)


def render_run(run_dir: str | Path) -> dict[str, Any]:
    """(Re)write metrics.json, confusion.png, report.md, report.html (and curves.png)."""
    run_dir = Path(run_dir)
    meta, metrics = load_run(run_dir)
    class_names = metrics["class_names"]
    write_json_atomic(run_dir / METRICS_FILE, metrics)
    title = f"{meta.get('run', {}).get('name', run_dir.name)} (n={metrics['overall']['n']})"
    if "seed_statistics" in metrics:
        title += f", ensemble of {metrics['seed_statistics']['n_seeds']} seeds"
    png = confusion_png(metrics["overall"]["confusion"], class_names, title)
    write_bytes_atomic(run_dir / CONFUSION_FILE, png)
    curves = read_curves(run_dir)
    curve_png = curves_png(curves, "training curves") if curves else None
    if curve_png:
        write_bytes_atomic(run_dir / CURVES_PNG, curve_png)
    write_text_atomic(run_dir / REPORT_FILE, render_markdown(meta, metrics, curves))
    write_text_atomic(run_dir / HTML_FILE, render_run_html(meta, metrics, png, curve_png))
    return metrics


# ---- comparing runs --------------------------------------------------------------------------


def compare_runs(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One entry per run: name, model, protocol, leak flag and overall/per-dataset figures."""
    entries = []
    for run_dir in run_dirs:
        meta, metrics = load_run(run_dir)
        entries.append(
            {
                "run": str(run_dir),
                "name": meta.get("run", {}).get("name", Path(run_dir).name),
                "model": model_label(meta),
                "protocol": meta.get("protocol", {}).get("description", "?"),
                "leaking": is_leaking(meta),
                **headline_figures(metrics),
            }
        )
    return entries


def comparison_scopes(entries: Sequence[dict[str, Any]]) -> list[str]:
    """`overall` then every dataset any run reports, in first-seen order."""
    return ["overall", *dict.fromkeys(db for e in entries for db in e["per_dataset"])]


def comparison_table(entries: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per run, UF1/UAR/accuracy per scope (— where a run lacks it)."""
    scopes = comparison_scopes(entries)
    header = ["run", "model", "protocol"]
    header += [f"{scope} {m}" for scope in scopes for m in ("UF1", "UAR", "acc")]
    rows = []
    for e in entries:
        cells = [e["name"], e["model"], e["protocol"] + (f" {LEAK_MARK}" if e["leaking"] else "")]
        for scope in scopes:
            m = e["overall"] if scope == "overall" else e["per_dataset"].get(scope)
            cells += [_fmt(m[k]) if m else "—" for k in ("uf1", "uar", "accuracy")]
        rows.append(cells)
    return header, rows


LEAK_NOTE = (
    f"{LEAK_MARK} marks a protocol that puts one subject in both train and test: its figures "
    "are inflated and not comparable with subject-independent (LOSO) ones."
)


def render_comparison_markdown(entries: Sequence[dict[str, Any]]) -> str:
    """comparison.md: the runs side by side (figures on each run's pooled predictions)."""
    header, rows = comparison_table(entries)
    lines = [f"# merkit comparison of {len(entries)} runs", "", *markdown_table(header, rows), ""]
    if any(e["leaking"] for e in entries):
        lines += [LEAK_NOTE, ""]
    lines += [f"- {e['name']}: {e['run']}" for e in entries]
    return "\n".join([*lines, ""])


def write_comparison(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[dict[str, Any]]:
    """Write comparison.md, comparison.html and comparison.json into `out_dir`."""
    entries = compare_runs(run_dirs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / COMPARISON_FILE.format(ext="json"), entries)
    write_text_atomic(
        out_dir / COMPARISON_FILE.format(ext="md"), render_comparison_markdown(entries)
    )
    write_text_atomic(out_dir / COMPARISON_FILE.format(ext="html"), render_comparison_html(entries))
    return entries
