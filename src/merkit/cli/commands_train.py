"""`merkit train` and `merkit report`: run an experiment into a run folder, re-render its report."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from merkit.cli import options
from merkit.cli.app import app, console, err_console, print_table
from merkit.cli.commands_eval import metrics_table
from merkit.errors import ConfigError


def parse_seeds(text: str | None) -> list[int] | None:
    """`"0,1,2"` -> [0, 1, 2]; ConfigError naming the bad item."""
    if text is None:
        return None
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(
            f"--seeds {text!r}: expected comma-separated integers like 0,1,2"
        ) from None


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
        title = f"{title} (seed ensemble)"
    print_table(metrics_table(metrics, title))


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Run folder (resumed if it holds this config).")],
    data: options.Data = None,
    root: options.Root = None,
    model: options.Model = None,
    protocol: Annotated[
        str | None, typer.Option(help="loso (default), lodo, group-kfold, kfold (leaks subjects).")
    ] = None,
    config: options.ConfigFile = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds, e.g. 0,1,2.")] = None,
    epochs: options.Epochs = None,
    taxonomy: options.Taxonomy = None,
    n_splits: Annotated[
        int | None, typer.Option(help="Folds of group-kfold / kfold protocols.")
    ] = None,
    workers: options.Workers = None,
    cache: options.Cache = None,
    executor: Annotated[
        str | None,
        typer.Option(help="Where training jobs run: local (default), processes or ray."),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(help="Training jobs at once with --executor processes/ray (default: cores)."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            "--address",
            help="Ray cluster to join ('auto' or host:port); default: start a local Ray.",
        ),
    ] = None,
    allow_leakage: Annotated[
        bool, typer.Option("--allow-leakage", help="Allow a protocol that leaks subjects.")
    ] = False,
    overwrite: options.Overwrite = False,
    quiet: options.Quiet = False,
) -> None:
    """Train and evaluate a model under a protocol; write predictions, metrics and a report."""
    from merkit.evaluation.run_folder import REPORT_FILE
    from merkit.evaluation.splitters import SubjectLeakageWarning
    from merkit.training.config import options_config
    from merkit.training.runner import build_splitter, run_experiment

    experiment = options_config(
        config,
        {
            "data.name": data,
            "data.root": str(root) if root is not None else None,
            "data.taxonomy": taxonomy,
            "protocol.name": protocol,
            "protocol.options.n_splits": n_splits,
            "protocol.allow_leakage": True if allow_leakage else None,
            "recipe.model": model,
            "recipe.epochs": epochs,
            "seeds": parse_seeds(seeds),
            "workers": workers,
            "cache_dir": str(cache) if cache is not None else None,
            "executor": executor,
            "executor_workers": jobs,
            "ray_address": ray_address,
        },
    )
    splitter = build_splitter(experiment)  # refuses a leaking protocol unless allowed
    if not splitter.subject_independent:
        err_console.print(
            f"[bold yellow]warning:[/] {splitter.describe()} puts the same subject in train and "
            "test: its figures are inflated and not comparable with LOSO (the report lists the "
            "subjects on both sides)",
            highlight=False,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubjectLeakageWarning)  # said once above
        result = run_experiment(experiment, out, overwrite=overwrite, progress=not quiet)
    title = f"{experiment.recipe.model} on {experiment.data.name}, {experiment.protocol.name}"
    print_metrics(result.metrics, title)
    console.print(
        f"{result.folds_computed} folds trained, {result.folds_loaded} resumed from the run "
        f"folder, {len(result.failed)} samples failed preparation; {result.seconds:.1f} s",
        soft_wrap=True,
    )
    console.print(f"report: {result.out_dir / REPORT_FILE}", soft_wrap=True, highlight=False)


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
        console.print(f"[yellow]{LEAK_NOTE}[/]", soft_wrap=True, highlight=False)
    md, html = (out / COMPARISON_FILE.format(ext=ext) for ext in ("md", "html"))
    console.print(f"comparison: {md} and {html}", soft_wrap=True, highlight=False)
