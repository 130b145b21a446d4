"""`merkit prepare`: compute (and cache) a dataset's model inputs, and report what failed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from merkit.cli import options
from merkit.cli.app import app, console, print_table
from merkit.errors import ConfigError
from merkit.preprocess.config import DEFAULT_SPOTTING, ON_ERROR, PrepareConfig

if TYPE_CHECKING:
    from merkit.preprocess.pipeline import Prepared
from merkit.cli.tables import failures_table

DEFAULT_CACHE = Path(".merkit-cache")


def summary_table(name: str, prepared: Prepared, total: int) -> Table:
    table = Table(title=f"merkit prepare {name}: {prepared.config.output}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("samples", str(total))
    table.add_row("prepared", str(len(prepared.samples)))
    table.add_row("computed now", str(prepared.computed))
    table.add_row("cache hits", str(prepared.cache_hits))
    table.add_row("failed", str(len(prepared.failed)))
    table.add_row("array", f"{tuple(prepared.x.shape)} {prepared.x.dtype}")
    for source, count in prepared.landmark_counts().items():  # "regions": how points were found
        table.add_row(f"points: {source}", str(count))
    table.add_row("seconds", f"{prepared.seconds:.2f}")
    return table


@app.command("prepare")
def prepare_command(
    kind: Annotated[str, typer.Argument(help="Dataset name (see `merkit datasets`).")],
    root: Annotated[Path, typer.Argument(help="Folder holding the dataset release.")],
    cache: options.Cache = DEFAULT_CACHE,
    output: Annotated[
        str,
        typer.Option(help="maps (u/v/strain motion maps), apex, sequence or regions."),
    ] = "maps",
    size: Annotated[int, typer.Option(help="Side of the output maps/images.")] = 28,
    flow: options.Flow = "tvl1",
    aligned: options.Aligned = False,
    crop_size: Annotated[
        int, typer.Option(help="Side of the aligned face crop that flow runs on (pixels).")
    ] = PrepareConfig.crop_size,
    spotting: options.Spotting = DEFAULT_SPOTTING,
    apex_policy: options.ApexPolicy = PrepareConfig.apex_policy,
    workers: options.Workers = None,
    on_error: Annotated[str, typer.Option(help="skip (report at the end) or stop.")] = "skip",
    export_maps: Annotated[
        Path | None,
        typer.Option(help="Also write maps outputs as '{subject}_{filename} .png' flow maps here."),
    ] = None,
    taxonomy: options.Taxonomy = None,
    quiet: options.Quiet = False,
) -> None:
    """Compute motion inputs for every sample of a dataset, cached by input and parameters."""
    from merkit.data.registry import load_dataset
    from merkit.preprocess.pipeline import export_flow_maps, output_folder, prepare

    config = PrepareConfig(
        output=output,
        size=size,
        flow=flow,
        aligned=aligned,
        crop_size=crop_size,
        spotting=spotting,
        apex_policy=apex_policy,
    )
    if on_error not in ON_ERROR:
        raise ConfigError(f"--on-error {on_error!r}: choose one of {', '.join(ON_ERROR)}")
    if export_maps is not None and output != "maps":
        raise ConfigError(f"--export-maps needs --output maps, not {output!r}")
    if export_maps is not None:
        output_folder(export_maps, "--export-maps folder", create=False)
    dataset = load_dataset(kind, root, taxonomy=taxonomy)
    prepared = prepare(
        dataset.samples,
        config,
        cache_dir=cache,
        workers=workers,
        on_error=on_error,
        progress=not quiet,
    )
    print_table(summary_table(kind, prepared, len(dataset)))
    for note in prepared.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if prepared.failed:
        print_table(failures_table(prepared.failed))
    if export_maps is not None:
        written = export_flow_maps(prepared, export_maps)
        console.print(f"wrote {len(written)} maps to {export_maps}")
