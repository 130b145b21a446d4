"""`merkit models`: every registered model with its input, size and cost, read from the shipped
catalog (no torch); `--timing` also measures milliseconds per sample on this machine."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from merkit.cli import options
from merkit.cli.app import app, err_console, print_table
from merkit.cli.tables import check_json_target, write_json
from merkit.errors import ConfigError
from merkit.preprocess.config import INPUT_KINDS

if TYPE_CHECKING:
    from merkit.catalog import ModelFacts
    from merkit.models.profile import ModelTiming


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _train_ms(facts: ModelFacts, timing: ModelTiming) -> str:
    """A closed-form model (features + SVM) is fitted in one solve, an average by its members'
    engines: neither has one time per sample-step."""
    if facts.training == "gradient":
        return _ms(timing.train_ms)
    return facts.training.replace("-", " ")


def models_table(
    rows: list[ModelFacts], num_classes: int, timings: dict[str, ModelTiming] | None = None
) -> Table:
    """One row per model; parameter counts at `num_classes` classes, as the title says."""
    where = f", timed on {next(iter(timings.values())).device}" if timings else ""
    table = Table(title=f"Registered models (parameters at {num_classes} classes{where})")
    for column in ("model", "input", "shape", "params", "MFLOPs"):
        table.add_column(column, justify="left" if column in ("model", "input") else "right")
    if timings is not None:
        table.add_column("train ms", justify="right")
        table.add_column("infer ms", justify="right")
    table.add_column("summary", overflow="fold")
    for r in rows:
        cells = [r.name, r.kind, r.input, "-" if r.params is None else f"{r.params:,}"]
        cells.append(f"{r.mflops:.2f}")
        if timings is not None:
            cells += [_train_ms(r, timings[r.name]), _ms(timings[r.name].infer_ms)]
        table.add_row(*cells, r.summary)
    return table


@app.command()
def models(
    kind: Annotated[
        str | None,
        typer.Option(help=f"Only models taking this input: {', '.join(INPUT_KINDS)}."),
    ] = None,
    timing: Annotated[
        bool,
        typer.Option(
            "--timing", help="Also measure train and inference milliseconds per sample (slow)."
        ),
    ] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Re-measure cached timings.")] = False,
    timing_cache: Annotated[
        Path | None,
        typer.Option(help="File keeping measured timings (default: the user cache folder)."),
    ] = None,
    json_path: options.JsonFile = None,
    quiet: options.Quiet = False,
) -> None:
    """List the models merkit can train: input, parameters, MFLOPs and what each is."""
    from dataclasses import asdict

    from merkit.catalog import CATALOG_CLASSES, read_catalog

    check_json_target(json_path)
    if kind is not None and kind not in INPUT_KINDS:
        raise ConfigError(f"--kind {kind!r} must be one of {', '.join(INPUT_KINDS)}")
    rows = [r for r in read_catalog() if kind is None or r.kind == kind]
    timings = None
    if timing:
        from merkit.models.profile import default_cache_path, time_models

        status = nullcontext() if quiet else err_console.status("measuring models")
        with status as shown:
            measured = time_models(
                [r.name for r in rows],
                refresh=refresh,
                cache_path=timing_cache or default_cache_path(),
                num_classes=CATALOG_CLASSES,
                progress=None if quiet else lambda name: shown.update(f"measuring {name}"),
            )
        timings = {t.name: t for t in measured}
    if json_path is None or str(json_path) != "-":
        print_table(models_table(rows, CATALOG_CLASSES, timings))
    if json_path is not None:
        document = [
            {
                **asdict(r),
                **(
                    {"train_ms": timings[r.name].train_ms, "infer_ms": timings[r.name].infer_ms}
                    if timings
                    else {}
                ),
            }
            for r in rows
        ]
        write_json({"num_classes": CATALOG_CLASSES, "models": document}, json_path)
