"""`merkit train`: run an experiment into a run folder (resumable)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from merkit.cli import options
from merkit.cli.app import app, console, say
from merkit.cli.tables import print_metrics
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


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Run folder (resumed if it holds this config).")],
    data: options.Data = None,
    root: options.Root = None,
    model: options.Model = None,
    recipe: options.RecipePreset = None,
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
    flow: options.Flow = None,
    spotting: options.Spotting = None,
    apex_policy: options.ApexPolicy = None,
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
    device: options.Device = None,
    precision: options.Precision = None,
    gpus_per_job: options.GpusPerJob = None,
    deterministic: options.Deterministic = False,
    quiet: options.Quiet = False,
) -> None:
    """Train and evaluate a model (default: recommended) under a protocol; write predictions,
    metrics and a report."""
    from merkit.evaluation.run_folder import REPORT_FILE
    from merkit.evaluation.splitters import SubjectLeakageWarning
    from merkit.training.config import build_experiment
    from merkit.training.runner import build_splitter, run_experiment

    experiment = build_experiment(
        config,
        options.config_overrides(
            data=data,
            root=root,
            taxonomy=taxonomy,
            protocol=protocol,
            n_splits=n_splits,
            allow_leakage=allow_leakage,
            model=model,
            recipe=recipe,
            epochs=epochs,
            seeds=parse_seeds(seeds),
            flow=flow,
            spotting=spotting,
            apex_policy=apex_policy,
            workers=workers,
            cache=cache,
            device=device,
            precision=precision,
            deterministic=deterministic,
            gpus_per_job=gpus_per_job,
            executor=executor,
            jobs=jobs,
            ray_address=ray_address,
        ),
    )
    splitter = build_splitter(experiment)  # refuses a leaking protocol unless allowed
    if not splitter.subject_independent:
        say(
            "warning:",
            "bold yellow",
            f"{splitter.describe()} puts the same subject in train and test: its figures are "
            "inflated and not comparable with LOSO (the report lists the subjects on both sides)",
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
