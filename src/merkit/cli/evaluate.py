"""`merkit evaluate`: per-fold checkpoints scored under LOSO, each on the subject it left out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from merkit.cli import options
from merkit.cli.app import app, console, print_table
from merkit.cli.tables import metrics_table


@app.command()
def evaluate(
    folds_dir: Annotated[
        Path, typer.Argument(help="Folder of per-fold checkpoints {subject}.pt (`merkit import`).")
    ],
    out: Annotated[Path, typer.Option(help="Run folder for predictions, metrics and report.")],
    data: options.Data = None,
    root: options.Root = None,
    taxonomy: options.Taxonomy = None,
    cache: options.Cache = None,
    workers: options.Workers = None,
    overwrite: options.Overwrite = False,
    device: options.Device = None,
    quiet: options.Quiet = False,
) -> None:
    """Score per-fold checkpoints under LOSO, each on the subject its fold left out."""
    from merkit.errors import ConfigError
    from merkit.evaluation.run_folder import REPORT_FILE
    from merkit.training.config import DataConfig
    from merkit.training.evaluate import evaluate_folds

    if data is None or root is None:
        raise ConfigError("evaluate needs --data and --root: the dataset the folds left out")
    result = evaluate_folds(
        folds_dir,
        DataConfig(name=data, root=str(root), taxonomy=taxonomy),
        out,
        cache_dir=cache,
        workers=workers or 1,
        overwrite=overwrite,
        progress=not quiet,
        device=device or "auto",
    )
    title = f"{folds_dir.name} on {data}: {result.n_subjects} subjects, each by its own fold"
    print_table(metrics_table(result.metrics, title))
    console.print(f"report: {result.out_dir / REPORT_FILE}", soft_wrap=True, markup=False)
