"""`merkit score`: figures from any predictions CSV (ours, or another code base's converted)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from merkit.cli.app import app, console, print_table

MEGC3 = "negative,positive,surprise"


def metrics_table(metrics: dict, title: str) -> Table:
    """Overall and per-dataset UF1 / UAR / accuracy / macro precision as a rich table."""
    table = Table(title=title)
    for column in ("scope", "n", "UF1", "UAR", "accuracy", "macro precision"):
        table.add_column(column, justify="left" if column == "scope" else "right")
    rows = [("overall", metrics["overall"]), *metrics["per_dataset"].items()]
    for scope, m in rows:
        table.add_row(
            scope,
            str(m["n"]),
            f"{m['uf1']:.4f}",
            f"{m['uar']:.4f}",
            f"{m['accuracy']:.4f}",
            f"{m['macro_precision']:.4f}",
        )
    return table


@app.command()
def score(
    predictions: Annotated[Path, typer.Argument(help="CSV: dataset,subject,sample,true,predicted")],
    classes: Annotated[
        str | None,
        typer.Option(help=f"Comma-separated class names in index order (e.g. {MEGC3})."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Metrics JSON (default: beside the CSV, *.metrics.json).")
    ] = None,
    megc_log: Annotated[
        bool, typer.Option("--megc-log", help="Input is a MEGC2019 log (db subject / file t p).")
    ] = False,
) -> None:
    """Pooled UF1, UAR, accuracy, macro precision, per class and per dataset, from predictions."""
    from merkit.evaluation.metrics import pooled_metrics
    from merkit.evaluation.predictions import read_megc_logfile, read_predictions
    from merkit.io import write_json_atomic

    table = read_megc_logfile(predictions) if megc_log else read_predictions(predictions)
    names = table.class_names(classes.split(",") if classes else None)
    y_true, y_pred = table.encode(names)
    metrics = pooled_metrics(y_true, y_pred, names, table.dataset)
    metrics["source"] = str(predictions)
    metrics["class_names"] = names
    target = out or predictions.with_suffix(".metrics.json")
    write_json_atomic(target, metrics)
    print_table(metrics_table(metrics, f"{predictions.name}: {len(table)} predictions"))
    console.print(f"metrics written to {target}")
