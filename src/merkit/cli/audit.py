"""`merkit audit`: how much do test-subject epoch picking and k-fold over samples inflate scores?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from merkit.cli import options
from merkit.cli.app import app, console, print_table, say


def audit_table(result: dict[str, Any]) -> Table:
    """The protocols and scoring practices side by side; leaking rows in yellow, with inflation."""
    from merkit.evaluation.audit_report import COMPARISON_HEADER, comparison_rows

    table = Table(title=f"leakage audit: {result['model']} on {result['data']['name']}")
    for column in COMPARISON_HEADER:
        table.add_column(column, justify="left" if column in ("scope", "protocol") else "right")
    for row in comparison_rows(result):
        table.add_row(*row, style="yellow" if "⚠" in row[1] else None)
    return table


@app.command()
def audit(
    data: options.Data = None,
    root: options.Root = None,
    model: options.Model = None,
    recipe: options.RecipePreset = None,
    config: options.ConfigFile = None,
    out: Annotated[
        Path | None, typer.Option(help="Audit folder (resumed); default audit-{data}-{model}.")
    ] = None,
    epochs: options.Epochs = None,
    k: Annotated[int, typer.Option("--k", help="Folds of the sample-level k-fold protocol.")] = 10,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the training and of the k-fold split (default 0).")
    ] = None,
    taxonomy: options.Taxonomy = None,
    flow: options.Flow = None,
    spotting: options.Spotting = None,
    apex_policy: options.ApexPolicy = None,
    workers: options.Workers = None,
    cache: options.Cache = None,
    overwrite: options.Overwrite = False,
    device: options.Device = None,
    precision: options.Precision = None,
    deterministic: options.Deterministic = False,
    quiet: options.Quiet = False,
) -> None:
    """Train one recipe under LOSO, LOSO with test-picked epochs, and sample-level k-fold."""
    from merkit.training.config import build_experiment
    from merkit.training.leakage_audit import AUDIT_HTML, AUDIT_MD, run_audit

    experiment = build_experiment(
        config,
        options.config_overrides(
            data=data,
            root=root,
            taxonomy=taxonomy,
            model=model,
            recipe=recipe,
            epochs=epochs,
            seeds=[seed] if seed is not None else None,
            flow=flow,
            spotting=spotting,
            apex_policy=apex_policy,
            workers=workers,
            cache=cache,
            device=device,
            precision=precision,
            deterministic=deterministic,
        ),
    )
    from merkit.training.devices import resolve_device

    resolve_device(experiment.device)  # a device this machine lacks: refused before any work
    say(
        "warning:",
        "bold yellow",
        "the audit deliberately runs leaking figures: an oracle that picks each LOSO fold's "
        f"epoch on its test subject (pooled, and averaged per subject), and sample-level "
        f"{k}-fold, which puts the same subject in train and test. Only the LOSO figure is honest.",
    )
    out = out or Path(f"audit-{experiment.data.name}-{experiment.recipe.model}")
    result = run_audit(experiment, out, k=k, overwrite=overwrite, progress=not quiet)
    print_table(audit_table(result))
    console.print(result["leakage"]["summary"], style="yellow", soft_wrap=True, highlight=False)
    console.print(
        f"report: {out / AUDIT_MD} and {out / AUDIT_HTML}", soft_wrap=True, highlight=False
    )
