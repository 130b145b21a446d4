"""`merkit demo`: synthetic data in the real layout -> preparation -> LOSO training -> report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from merkit.cli import options
from merkit.cli.app import app, console
from merkit.cli.tables import print_metrics


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the synthetic data, cache and run.")] = Path(
        "merkit-demo"
    ),
    subjects: Annotated[int, typer.Option(help="Synthetic subjects (one LOSO fold each).")] = 12,
    clips: Annotated[int, typer.Option(help="Clips per subject.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the data and of training.")] = 0,
    model: options.Model = None,
    flow: options.Flow = None,
    epochs: options.Epochs = None,
    quiet: options.Quiet = False,
) -> None:
    """Run the whole pipeline on synthetic micro-expressions and print the LOSO figures."""
    from merkit.demo import DemoConfig, run_demo
    from merkit.evaluation.run_folder import REPORT_FILE
    from merkit.training.recipe import DEFAULT_MODEL

    config = DemoConfig(
        out=out,
        n_subjects=subjects,
        clips_per_subject=clips,
        seed=seed,
        model=model or DEFAULT_MODEL,
        flow=flow,
        epochs=epochs,
    )
    console.print(
        f"synthetic CASME II-style data: {subjects} subjects x {clips} clips in {out / 'data'}",
        highlight=False,
    )
    result = run_demo(config, progress=not quiet)
    run = result.run
    print_metrics(run.metrics, f"{config.model} on synthetic CASME II (5 classes), LOSO")
    console.print(
        f"{run.n_folds} folds, {run.n_samples} clips, {run.seconds:.1f} s "
        f"(rerun: finished folds, prepared clips and the final model are reused)",
        highlight=False,
    )
    lines = [
        f"report: {run.out_dir / REPORT_FILE}",
        f"final model (all {run.n_samples} clips): {result.model}",
        f"clips to try it on: {result.clips[0].parent}",
        f"look at both in a browser: merkit serve --runs {out}",
    ]
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
