"""`merkit fit`: a final model on all samples of a dataset, in a self-describing checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from merkit.cli import options
from merkit.cli.app import app, console, print_table
from merkit.cli.tables import failures_table, progress_bar
from merkit.io import check_writable


@app.command()
def fit(
    out: Annotated[Path, typer.Option(help="Checkpoint file to write (e.g. model.pt).")],
    data: options.Data = None,
    root: options.Root = None,
    model: options.Model = None,
    recipe: options.RecipePreset = None,
    config: options.ConfigFile = None,
    epochs: options.Epochs = None,
    seed: Annotated[int, typer.Option(help="Seed of weights, batches and augmentation.")] = 0,
    taxonomy: options.Taxonomy = None,
    flow: options.Flow = None,
    spotting: options.Spotting = None,
    apex_policy: options.ApexPolicy = None,
    cache: options.Cache = None,
    workers: options.Workers = None,
    device: options.Device = None,
    precision: options.Precision = None,
    deterministic: options.Deterministic = False,
    quiet: options.Quiet = False,
) -> None:
    """Train a final model (default: recommended) on ALL samples of a dataset and save a
    self-describing checkpoint."""
    from merkit.training.config import build_experiment
    from merkit.training.fit import fit_final

    check_writable(out, "file")
    experiment = build_experiment(
        config,
        options.config_overrides(
            data=data,
            root=root,
            taxonomy=taxonomy,
            model=model,
            recipe=recipe,
            epochs=epochs,
            flow=flow,
            spotting=spotting,
            apex_policy=apex_policy,
            seeds=[seed],
            workers=workers,
            cache=cache,
            device=device,
            precision=precision,
            deterministic=deterministic,
        ),
    )
    bar, task = progress_bar(), None

    def on_epoch(done: int, total: int) -> None:
        """The bar starts with training: preparation shows its own before."""
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("training", total=total)
        bar.update(task, completed=done)

    try:
        fitted = fit_final(
            experiment, out=out, progress=not quiet, on_epoch=None if quiet else on_epoch
        )
    finally:
        bar.stop()
    if fitted.failed:
        print_table(failures_table(fitted.failed))
    meta = fitted.checkpoint.meta
    dropped = f", {len(fitted.failed)} dropped (listed above)" if fitted.failed else ""
    console.print(
        f"trained {meta.model} on {meta.n_samples} {meta.dataset} samples{dropped} "
        f"({len(meta.class_names)} classes: {', '.join(meta.class_names)}); wrote {out}",
        soft_wrap=True,
        highlight=False,
    )
