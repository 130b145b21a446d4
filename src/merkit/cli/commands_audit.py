"""`merkit audit`: how much do test-subject epoch picking and k-fold over samples inflate scores?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from merkit.cli.app import app, console, err_console
from merkit.training.config import options_config
from merkit.training.leakage_audit import AUDIT_HTML, AUDIT_MD, COMPARISON_HEADER, comparison_rows
from merkit.training.leakage_audit import run_audit as run_leakage_audit


def audit_table(result: dict[str, Any]) -> Table:
    """The three protocols side by side; leaking rows in yellow with their inflation."""
    table = Table(title=f"leakage audit: {result['model']} on {result['data']['name']}")
    for column in COMPARISON_HEADER:
        table.add_column(column, justify="left" if column in ("scope", "protocol") else "right")
    for row in comparison_rows(result):
        table.add_row(*row, style="yellow" if "⚠" in row[1] else None)
    return table


@app.command()
def audit(
    data: Annotated[str | None, typer.Option(help="Dataset name (see `merkit datasets`).")] = None,
    root: Annotated[Path | None, typer.Option(help="The dataset's folder.")] = None,
    model: Annotated[
        str | None, typer.Option(help="Model; its shipped default recipe is used.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML experiment config (data, recipe); the options here override it."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Audit folder (resumed); default audit-{data}-{model}.")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs (overrides the recipe).")
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Folds of the sample-level k-fold protocol.")] = 10,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the training and of the k-fold split (default 0).")
    ] = None,
    taxonomy: Annotated[
        str | None, typer.Option(help="Label taxonomy: all, 5class, 3class.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Preprocessing processes.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an audit folder with other settings.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Train one recipe under LOSO, LOSO with test-picked epochs, and sample-level k-fold."""
    experiment = options_config(
        config,
        {
            "data.name": data,
            "data.root": str(root) if root is not None else None,
            "data.taxonomy": taxonomy,
            "recipe.model": model,
            "recipe.epochs": epochs,
            "seeds": [seed] if seed is not None else None,
            "workers": workers,
        },
    )
    err_console.print(
        f"[bold yellow]warning:[/] the audit deliberately runs two leaking figures: an oracle "
        f"that picks each LOSO fold's epoch on its test subject, and sample-level {k}-fold, "
        "which puts the same subject in train and test. Only the LOSO figure is honest.",
        highlight=False,
    )
    out = out or Path(f"audit-{experiment.data.name}-{experiment.recipe.model}")
    result = run_leakage_audit(experiment, out, k=k, overwrite=overwrite, progress=not quiet)
    console.print(audit_table(result))
    console.print(f"[yellow]{result['leakage']['summary']}[/]", soft_wrap=True, highlight=False)
    console.print(
        f"report: {out / AUDIT_MD} and {out / AUDIT_HTML}", soft_wrap=True, highlight=False
    )
