"""`merkit fit`: a final model on all samples of a dataset, in a self-describing checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from merkit.cli import options
from merkit.cli.app import app, console, print_table
from merkit.cli.tables import failures_table, progress_bar
from merkit.errors import ConfigError
from merkit.io import check_writable


@app.command()
def fit(
    data: options.Data,
    root: options.Root,
    out: Annotated[Path, typer.Option(help="Checkpoint file to write (e.g. model.pt).")],
    model: options.Model = None,
    recipe_name: options.RecipePreset = None,
    epochs: options.Epochs = None,
    seed: Annotated[int, typer.Option(help="Seed of weights, batches and augmentation.")] = 0,
    taxonomy: options.Taxonomy = None,
    flow: options.Flow = None,
    spotting: options.Spotting = None,
    apex_policy: options.ApexPolicy = None,
    cache: options.Cache = None,
    workers: options.Workers = None,
    quiet: options.Quiet = False,
) -> None:
    """Train a final model (default: recommended) on ALL samples of a dataset and save a
    self-describing checkpoint."""
    from merkit.preprocess.config import PrepareConfig
    from merkit.training.config import check_seed, prepare_defaults
    from merkit.training.fit import fit_final
    from merkit.training.recipe import DEFAULT_MODEL, default_recipe

    check_writable(out, "file")
    check_seed(seed, "--seed")
    model = model or DEFAULT_MODEL
    preset = recipe_name or "default"
    recipe = default_recipe(model, preset)
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"--epochs {epochs}: expected at least 1")
        recipe = dataclasses.replace(recipe, epochs=epochs)
    given = {"flow": flow, "spotting": spotting, "apex_policy": apex_policy}
    overrides = {k: v for k, v in given.items() if v is not None}
    config = PrepareConfig(**{**prepare_defaults(model, preset), **overrides})
    bar, task = progress_bar(), None

    def on_epoch(done: int, total: int) -> None:
        """The bar starts with training: preparation shows its own before."""
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("training", total=total)
        bar.update(task, completed=done)

    try:
        checkpoint = fit_final(
            data,
            root,
            model,
            recipe=recipe,
            prepare_config=config,
            seed=seed,
            taxonomy=taxonomy,
            out=out,
            cache_dir=cache,
            workers=workers,
            progress=not quiet,
            on_epoch=None if quiet else on_epoch,
        )
    finally:
        bar.stop()
    meta = checkpoint.meta
    if meta.failed:
        print_table(failures_table([(f["sample"], f["reason"]) for f in meta.failed]))
    dropped = f", {len(meta.failed)} dropped (listed above)" if meta.failed else ""
    console.print(
        f"trained {meta.model} on {meta.n_samples} {data} samples{dropped} "
        f"({len(meta.class_names)} classes: {', '.join(meta.class_names)}), {recipe.epochs} "
        f"epochs; wrote {out}",
        soft_wrap=True,
        highlight=False,
    )
