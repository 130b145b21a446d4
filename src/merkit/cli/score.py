"""`merkit score`: figures from any predictions CSV (ours, or another code base's converted)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from merkit.cli.app import app, console, print_table
from merkit.cli.tables import metrics_table

MEGC3 = "negative,positive,surprise"


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
    """Pooled UF1, UAR, accuracy (WAR), WF1, macro precision, per class and dataset, from a CSV."""
    from merkit.evaluation.metrics import pooled_metrics
    from merkit.evaluation.predictions import read_megc_logfile, read_predictions
    from merkit.io import check_writable, write_json_atomic

    if out is not None:
        check_writable(out, "file")
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
