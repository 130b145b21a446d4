"""Several runs side by side (`merkit report RUN1 RUN2 ...`), subject-leaking protocols marked.

Each run's figures are recomputed from its own pooled predictions, exactly as its report does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from merkit.evaluation.document import (
    Bullets,
    Document,
    Heading,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from merkit.evaluation.report import fmt, headline_figures, load_run, run_date
from merkit.io import check_writable, write_json_atomic, write_text_atomic

COMPARISON_FILE = "comparison.{ext}"
LEAK_MARK = "⚠ leaks subjects"
LEAK_NOTE = (
    f"{LEAK_MARK} marks a protocol that puts one subject in both train and test: its figures "
    "are inflated and not comparable with subject-independent (LOSO) ones."
)
HEADLINE = (("UF1", "uf1"), ("UAR", "uar"), ("acc", "accuracy"))  # column name, metrics key
PER_CLASS = (("F1", "f1"), ("recall", "recall"))


def compare_runs(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One entry per run: name, model, dataset, date, protocol, leak flag, overall/per-dataset
    figures and each class's F1 and recall."""
    entries = []
    for run_dir in run_dirs:
        meta, metrics = load_run(run_dir)
        per_class = metrics["overall"]["per_class"]
        entries.append(
            {
                "run": str(run_dir),
                "name": meta.run.name or Path(run_dir).name,
                "model": meta.model_label,
                "dataset": meta.data.name or "?",
                "date": run_date(meta),
                "protocol": meta.protocol.description or "?",
                "leaking": meta.leaking,
                **headline_figures(metrics),
                "per_class": {
                    name: {key: m[key] for _, key in PER_CLASS} for name, m in per_class.items()
                },
            }
        )
    return entries


def comparison_scopes(entries: Sequence[dict[str, Any]]) -> list[str]:
    """`overall` then every dataset any run reports, in first-seen order."""
    return ["overall", *dict.fromkeys(db for e in entries for db in e["per_dataset"])]


def _cell(value: float | None) -> str:
    return "—" if value is None else fmt(value)


def headline_values(entries: Sequence[dict[str, Any]]) -> list[list[float | None]]:
    """Per run, UF1/UAR/accuracy of every scope (None where a run lacks the scope)."""
    scopes = comparison_scopes(entries)
    rows = []
    for e in entries:
        figures = [e["overall"] if s == "overall" else e["per_dataset"].get(s) for s in scopes]
        rows.append([m[key] if m else None for m in figures for _, key in HEADLINE])
    return rows


def comparison_table(entries: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per run, UF1/UAR/accuracy per scope (— where a run lacks it)."""
    header = ["run", "model", "protocol"]
    header += [f"{scope} {name}" for scope in comparison_scopes(entries) for name, _ in HEADLINE]
    rows = [
        [e["name"], e["model"], e["protocol"] + (f" {LEAK_MARK}" if e["leaking"] else ""),
         *map(_cell, values)]
        for e, values in zip(entries, headline_values(entries), strict=True)
    ]  # fmt: skip
    return header, rows


def best_cells(
    values: Sequence[Sequence[float | None]], eligible: Sequence[bool], offset: int
) -> set[tuple[int, int]]:
    """(row, column + offset) of the best (highest, as shown to 4 decimals, ties all marked)
    value of each column among the `eligible` rows, or among all rows when none is: a
    subject-leaking run's inflated figure must not be called the best of honest ones."""
    pool = [r for r, ok in enumerate(eligible) if ok] or list(range(len(values)))
    cells = set()
    for c in range(len(values[0]) if values else 0):
        shown = {r: round(v, 4) for r in pool if (v := values[r][c]) is not None}
        top = max(shown.values(), default=None)
        cells |= {(r, c + offset) for r, v in shown.items() if v == top}
    return cells


def per_class_table(entries: Sequence[dict[str, Any]], key: str) -> Table:
    """One row per run, one column per class (of any run): the class's `key` figure, the best
    of each column marked."""
    classes = list(dict.fromkeys(c for e in entries for c in e["per_class"]))
    values = [[e["per_class"].get(c, {}).get(key) for c in classes] for e in entries]
    eligible = [not e["leaking"] for e in entries]
    return Table(
        ["run", *classes],
        [[e["name"], *map(_cell, row)] for e, row in zip(entries, values, strict=True)],
        [e["leaking"] for e in entries],
        best=best_cells(values, eligible, 1),
    )


def comparison_document(entries: Sequence[dict[str, Any]]) -> Document:
    """The runs side by side (figures on each run's pooled predictions): overall and per
    dataset, then per class; the best of each column marked."""
    header, rows = comparison_table(entries)
    leaking = [e["leaking"] for e in entries]
    honest = [not flag for flag in leaking]
    best = "Bold: the best of each column" + (
        " among the subject-independent runs." if any(leaking) and any(honest) else "."
    )
    document = Document(f"merkit comparison of {len(entries)} runs")
    document.add(
        Heading("Overall and per dataset (pooled over all folds)"),
        Table(
            header,
            rows,
            leaking,
            text_columns=3,
            best=best_cells(headline_values(entries), honest, 3),
        ),
        Paragraph(best),
    )
    if any(leaking):
        document.add(Paragraph(LEAK_NOTE, "warning"))
    for name, key in PER_CLASS:
        document.add(Heading(f"Per class: {name}"), per_class_table(entries, key))
    return document.add(
        Heading("Runs"),
        Bullets(
            [
                f"{e['name']}: {e['model']} on {e['dataset']}, finished {e['date']} ({e['run']})"
                for e in entries
            ]
        ),
    )


def write_comparison(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[dict[str, Any]]:
    """Write comparison.md, comparison.html and comparison.json into `out_dir`."""
    out_dir = check_writable(out_dir)
    entries = compare_runs(run_dirs)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = comparison_document(entries)
    write_json_atomic(out_dir / COMPARISON_FILE.format(ext="json"), entries)
    write_text_atomic(out_dir / COMPARISON_FILE.format(ext="md"), to_markdown(document))
    write_text_atomic(out_dir / COMPARISON_FILE.format(ext="html"), to_html(document))
    return entries
