"""Tables and progress bars that several commands print, written once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from merkit.cli.app import err_console, print_table

MAX_FAILURE_ROWS = 20  # failures listed at most; the rest are counted


def metrics_table(metrics: dict, title: str) -> Table:
    """Overall and per-dataset figures (the report's metric table) as a rich table."""
    table = Table(title=title)
    from merkit.evaluation.report import METRIC_HEADER, metric_rows

    for column in METRIC_HEADER:
        table.add_column(column, justify="left" if column == "scope" else "right")
    for row in metric_rows(metrics):
        table.add_row(*(str(cell) for cell in row))
    return table


def seed_table(metrics: dict[str, Any]) -> Table:
    """Mean ± std over seeds of the headline figures, overall and per dataset."""
    stats = metrics["seed_statistics"]
    table = Table(title=f"mean ± std over {stats['n_seeds']} seeds")
    for column in ("scope", "UF1", "UAR", "accuracy", "macro precision"):
        table.add_column(column, justify="left" if column == "scope" else "right")
    for scope, m in [("overall", stats["overall"]), *stats["per_dataset"].items()]:
        cells = [f"{m[k]['mean']:.4f} ± {m[k]['std']:.4f}" for k in ("uf1", "uar", "accuracy")]
        table.add_row(scope, *cells, f"{m['macro_precision']['mean']:.4f}")
    return table


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    if "seed_statistics" in metrics:
        print_table(seed_table(metrics))
        title = f"{title} (probabilities averaged over seeds)"
    print_table(metrics_table(metrics, title))


def failures_table(failed: list[tuple[str, str]], title: str = "Failed samples") -> Table:
    table = Table(title=title)
    table.add_column("sample", overflow="fold")
    table.add_column("reason", overflow="fold")
    for uid, reason in failed[:MAX_FAILURE_ROWS]:
        table.add_row(uid, reason)
    if len(failed) > MAX_FAILURE_ROWS:
        table.add_row("...", f"{len(failed) - MAX_FAILURE_ROWS} more")
    return table


def progress_bar(transient: bool = True, disable: bool = False) -> Progress:
    """A progress bar on stderr (`disable`: nothing drawn at all)."""
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True, markup=False),
        transient=transient,
        disable=disable,
    )


def write_json(document: object, path: Path) -> None:
    """`document` as JSON in `path` (atomically, said on stderr) or, for '-', on stdout."""
    from merkit.io import write_text_atomic

    text = json.dumps(document, indent=2) + "\n"
    if str(path) == "-":
        typer.echo(text, nl=False)
        return
    write_text_atomic(path, text)
    err_console.print(f"wrote {path}", highlight=False)


def check_json_target(path: Path | None) -> None:
    """Refuse, before any work, a --json target that cannot be written ('-' always can)."""
    from merkit.io import check_writable

    if path is not None and str(path) != "-":
        check_writable(path, "file")
