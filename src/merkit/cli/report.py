"""`merkit report`: re-render a run's report, or compare several runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from merkit.cli.app import app, console, print_table
from merkit.cli.tables import print_metrics


@app.command()
def report(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folders written by `merkit train` (several: compare).")
    ],
    out: Annotated[
        Path, typer.Option(help="Where a comparison of several runs writes comparison.md/.html.")
    ] = Path("."),
) -> None:
    """Re-render a run's metrics, report.md and report.html; with several runs, compare them."""
    if len(runs) == 1:
        from merkit.evaluation.report import render_run
        from merkit.evaluation.run_folder import HTML_FILE, REPORT_FILE

        run = runs[0]
        metrics = render_run(run)
        print_metrics(metrics, f"{run.name}: {metrics['overall']['n']} predictions")
        console.print(
            f"report: {run / REPORT_FILE} and {run / HTML_FILE}", soft_wrap=True, highlight=False
        )
        return
    from merkit.evaluation.comparison import (
        COMPARISON_FILE,
        LEAK_NOTE,
        comparison_table,
        write_comparison,
    )

    entries = write_comparison(runs, out)
    header, rows = comparison_table(entries)
    table = Table(title=f"{len(entries)} runs (pooled predictions)")
    for column in header:
        table.add_column(column, justify="left" if column in header[:3] else "right")
    for entry, row in zip(entries, rows, strict=True):
        table.add_row(*row, style="yellow" if entry["leaking"] else None)
    print_table(table)
    if any(e["leaking"] for e in entries):
        console.print(LEAK_NOTE, style="yellow", soft_wrap=True, highlight=False)
    md, html = (out / COMPARISON_FILE.format(ext=ext) for ext in ("md", "html"))
    console.print(f"comparison: {md} and {html}", soft_wrap=True, highlight=False)
