"""`merkit fit`, `merkit predict`, `merkit export`: ship a final model and use it on videos."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from merkit.cli import options
from merkit.cli.app import app, console, err_console, say
from merkit.errors import ConfigError, DataLayoutError
from merkit.io import check_writable


def _progress(transient: bool = True) -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True, markup=False),
        transient=transient,
    )


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
    from merkit.inference.checkpoint import fit_final
    from merkit.preprocess.config import PrepareConfig
    from merkit.training.config import prepare_defaults
    from merkit.training.recipe import DEFAULT_MODEL, default_recipe

    check_writable(out, "file")
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
    bar, task = _progress(), None

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
    console.print(
        f"trained {meta.model} on {meta.n_samples} {data} samples ({len(meta.class_names)} "
        f"classes: {', '.join(meta.class_names)}), {recipe.epochs} epochs; wrote {out}",
        soft_wrap=True,
        highlight=False,
    )


def _write_results(outcomes: list[dict[str, Any]], out: Path | None) -> None:
    from merkit.io import write_text_atomic

    document: Any = outcomes[0] if len(outcomes) == 1 else outcomes
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_text_atomic(out, text)
        err_console.print(f"wrote {out}", highlight=False)


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="A .pt checkpoint (merkit fit) or .onnx export.")],
    inputs: Annotated[list[Path], typer.Argument(help="Video files or frame folders.")],
    onset: Annotated[int | None, typer.Option(help="Onset frame number (else spotted).")] = None,
    apex: Annotated[int | None, typer.Option(help="Apex frame number (needs --onset).")] = None,
    offset: Annotated[int | None, typer.Option(help="Offset frame number.")] = None,
    aligned: options.Aligned = False,
    window: Annotated[
        int | None, typer.Option(help="Spotting window in frames (default 0.2 s of video).")
    ] = None,
    spotting: options.Spotting = None,
    out: Annotated[Path | None, typer.Option(help="Write the JSON here, not to stdout.")] = None,
    picture: Annotated[
        Path | None,
        typer.Option(help="Folder for a PNG per input: apex face, flow, attention, motion curve."),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Processes predicting inputs (each prepares its own clip).")
    ] = 1,
    quiet: options.Quiet = False,
) -> None:
    """Spot, time and classify the micro-expression in each video or frame folder."""
    import torch

    from merkit.inference.predictor import predict_many

    if workers < 1:
        raise ConfigError(f"--workers {workers}: expected at least 1")
    if out is not None:
        check_writable(out, "file")
    if picture is not None:
        check_writable(picture)
    torch.set_num_threads(1)  # one small map per clip: extra threads only contend for cores
    options = {
        "onset": onset,
        "apex": apex,
        "offset": offset,
        "aligned": aligned,
        "window": window,
        "spotting": spotting,
        "picture_dir": picture,
    }
    with _progress() as bar:
        task = bar.add_task("predicting", total=len(inputs), visible=not quiet and len(inputs) > 1)
        outcomes = predict_many(
            model, inputs, workers=workers, on_done=lambda: bar.advance(task), **options
        )
    results, failed = [], 0
    for path, outcome in zip(inputs, outcomes, strict=True):
        if isinstance(outcome, str):
            failed += 1
            say("error:", "bold red", outcome)
            results.append({"input": str(path), "error": outcome})
        else:
            results.append(outcome)
    _write_results(results, out)
    if failed:  # after the results: one bad input must not hide the others' output
        raise DataLayoutError(f"{failed} of {len(inputs)} inputs failed (see the errors above)")


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="A .pt checkpoint written by `merkit fit`.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="The .onnx file to write.")],
    opset: Annotated[int, typer.Option(help="ONNX opset (>= 17).")] = 18,
) -> None:
    """Export a checkpoint to ONNX, with its class names and preprocessing in the metadata."""
    from merkit.inference.checkpoint import load_checkpoint
    from merkit.inference.export import export_onnx

    check_writable(onnx, "file")
    net, meta = load_checkpoint(model)
    export_onnx(net, meta, onnx, opset=opset)
    console.print(f"wrote {onnx} ({meta.model}, opset {opset})", highlight=False)
