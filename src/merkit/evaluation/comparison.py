"""Several runs side by side (`merkit report RUN1 RUN2 ...`), subject-leaking protocols marked.

Each run's figures are recomputed from its own pooled predictions, exactly as its report does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from merkit.evaluation.document import Bullets, Document, Paragraph, Table, to_html, to_markdown
from merkit.evaluation.report import fmt, headline_figures, load_run
from merkit.io import write_json_atomic, write_text_atomic

COMPARISON_FILE = "comparison.{ext}"
LEAK_MARK = "⚠ leaks subjects"
LEAK_NOTE = (
    f"{LEAK_MARK} marks a protocol that puts one subject in both train and test: its figures "
    "are inflated and not comparable with subject-independent (LOSO) ones."
)


def compare_runs(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One entry per run: name, model, protocol, leak flag and overall/per-dataset figures."""
    entries = []
    for run_dir in run_dirs:
        meta, metrics = load_run(run_dir)
        entries.append(
            {
                "run": str(run_dir),
                "name": meta.run.name or Path(run_dir).name,
                "model": meta.model_label,
                "protocol": meta.protocol.description or "?",
                "leaking": meta.leaking,
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
            cells += [fmt(m[k]) if m else "—" for k in ("uf1", "uar", "accuracy")]
        rows.append(cells)
    return header, rows


def comparison_document(entries: Sequence[dict[str, Any]]) -> Document:
    """The runs side by side (figures on each run's pooled predictions)."""
    header, rows = comparison_table(entries)
    document = Document(f"merkit comparison of {len(entries)} runs")
    document.add(Table(header, rows, [e["leaking"] for e in entries], text_columns=3))
    if any(e["leaking"] for e in entries):
        document.add(Paragraph(LEAK_NOTE, "warning"))
    return document.add(Bullets([f"{e['name']}: {e['run']}" for e in entries]))


def write_comparison(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[dict[str, Any]]:
    """Write comparison.md, comparison.html and comparison.json into `out_dir`."""
    entries = compare_runs(run_dirs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = comparison_document(entries)
    write_json_atomic(out_dir / COMPARISON_FILE.format(ext="json"), entries)
    write_text_atomic(out_dir / COMPARISON_FILE.format(ext="md"), to_markdown(document))
    write_text_atomic(out_dir / COMPARISON_FILE.format(ext="html"), to_html(document))
    return entries
