"""`merkit models`: every registered model with its input, size, FLOPs and CPU speed."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from merkit.cli import options
from merkit.cli.app import app, err_console, print_table
from merkit.errors import ConfigError
from merkit.preprocess.config import INPUT_KINDS

if TYPE_CHECKING:
    from merkit.models.profile import ModelProfile


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _train_ms(row: ModelProfile) -> str:
    """A closed-form model (features + SVM) is fitted in one solve, an ensemble by its members'
    engines: neither has one time per sample-step."""
    if row.training == "gradient":
        return _ms(row.train_ms)
    return row.training.replace("-", " ")


def models_table(rows: list[ModelProfile]) -> Table:
    table = Table(title="Registered models (costs per sample, CPU)")
    table.add_column("model")
    table.add_column("input")
    table.add_column("shape", justify="right")
    table.add_column("params", justify="right")
    table.add_column("MFLOPs", justify="right")
    table.add_column("train ms", justify="right")
    table.add_column("infer ms", justify="right")
    table.add_column("description", overflow="fold")
    for r in rows:
        table.add_row(
            r.name,
            r.kind,
            r.input,
            "-" if r.params is None else f"{r.params:,}",
            f"{r.mflops:.2f}",
            _train_ms(r),
            _ms(r.infer_ms),
            r.description,
        )
    return table


@app.command()
def models(
    kind: Annotated[
        str | None, typer.Option(help="Only models taking this input: flow, apex or sequence.")
    ] = None,
    refresh: Annotated[bool, typer.Option(help="Re-measure cached timings.")] = False,
    timing: Annotated[
        bool, typer.Option("--timing/--no-timing", help="Measure CPU milliseconds per sample.")
    ] = True,
    timing_cache: Annotated[
        Path | None,
        typer.Option(help="File keeping measured timings (default: the user cache folder)."),
    ] = None,
    json_path: options.JsonFile = None,
    quiet: options.Quiet = False,
) -> None:
    """List the models merkit can train, with parameters, MFLOPs and train/infer speed."""
    from merkit.io import write_json_atomic
    from merkit.models import list_models
    from merkit.models.profile import as_dicts, default_cache_path, profile_models

    if kind is not None and kind not in INPUT_KINDS:
        raise ConfigError(f"--kind {kind!r} must be one of {', '.join(INPUT_KINDS)}")
    names = list_models(kind)
    with nullcontext() if quiet else err_console.status("measuring models") as status:
        rows = profile_models(
            names,
            timing=timing,
            refresh=refresh,
            cache_path=timing_cache or default_cache_path(),
            progress=None if quiet else lambda name: status.update(f"measuring {name}"),
        )
    print_table(models_table(rows))
    if json_path is not None:
        write_json_atomic(json_path, as_dicts(rows))
