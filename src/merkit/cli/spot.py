"""`merkit spot`: score apex spotting against a dataset's annotated apexes, into a run folder."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from merkit.cli import options
from merkit.cli.app import app, console, err_console, print_table
from merkit.cli.tables import failures_table
from merkit.errors import ConfigError
from merkit.preprocess.config import DEFAULT_SPOTTING, SPOTTING_METHODS, PrepareConfig

SPANS = ("annotated", "clip")


def figures_table(metrics: dict[str, Any], title: str) -> Table:
    from merkit.evaluation.spotting import FIGURE_COLUMNS, figure_rows

    table = Table(title=title)
    table.add_column("scope")
    for _, short, _ in FIGURE_COLUMNS:
        table.add_column(short, justify="right")
    for row in figure_rows(metrics):
        table.add_row(*(str(v) for v in row))
    return table


@app.command("spot")
def spot_command(
    kind: Annotated[str, typer.Argument(help="Dataset name (see `merkit datasets`).")],
    root: Annotated[Path, typer.Argument(help="Folder holding the dataset release.")],
    spotting: Annotated[
        str,
        typer.Option(help=f"Spotting method(s), comma-separated: {', '.join(SPOTTING_METHODS)}."),
    ] = DEFAULT_SPOTTING,
    span: Annotated[
        str,
        typer.Option(
            help="annotated: spot in onset..offset (as prepare does); clip: in every frame of "
            "the clip's folder (a recording, as predict does)."
        ),
    ] = "annotated",
    window: Annotated[
        int | None,
        typer.Option(help="A movement's length in frames for --span clip (default 0.2 s)."),
    ] = None,
    fps: options.Fps = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/spot-KIND).")] = None,
    overwrite: options.Overwrite = False,
    aligned: options.Aligned = False,
    crop_size: Annotated[
        int, typer.Option(help="Side of the aligned face crop spotting runs on (pixels).")
    ] = PrepareConfig.crop_size,
    workers: options.Workers = None,
    taxonomy: options.Taxonomy = None,
    quiet: options.Quiet = False,
) -> None:
    """Spot the apex of every clip whose apex is annotated and score it against the annotation."""
    from rich.progress import Progress

    from merkit.data.registry import load_dataset
    from merkit.evaluation.run_folder import HTML_FILE, REPORT_FILE
    from merkit.evaluation.spotting import claim_spotting_folder, write_spotting_run
    from merkit.evaluation.spotting_runner import (
        NOT_ANNOTATED,
        SpotSettings,
        scorable,
        spot_samples,
    )
    from merkit.preprocess.pipeline import default_workers, output_folder
    from merkit.preprocess.spotting import get_method

    if span not in SPANS:
        raise ConfigError(f"--span {span!r}: choose one of {', '.join(SPANS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}: expected at least 1")
    methods = tuple(m.strip() for m in spotting.split(",") if m.strip())
    settings = SpotSettings(
        methods=methods,
        whole_clip=span == "clip",
        window=window,
        fps=fps,
        prepare=PrepareConfig(aligned=aligned, crop_size=crop_size),
    )
    folder = out or Path("runs") / f"spot-{kind}"
    claim_spotting_folder(folder, overwrite)
    output_folder(folder, "run folder")
    dataset = load_dataset(kind, root, taxonomy=taxonomy)
    samples, left_out = scorable(dataset.samples, settings.whole_clip)
    skipped = [(uid, why) for uid, why in left_out if not why.startswith(NOT_ANNOTATED)]
    if not samples:
        if skipped:
            print_table(failures_table(skipped, "Left out"))
        raise ConfigError(
            f"{root}: no {kind} clip has an annotated apex and more than one frame to score "
            "spotting on"
        )
    started = time.perf_counter()
    with Progress(console=err_console, transient=True, disable=quiet) as bar:
        task = bar.add_task("spotting", total=len(samples))
        processes = workers or default_workers()
        rows, failed = spot_samples(samples, settings, processes, lambda: bar.advance(task))
    if not rows:
        print_table(failures_table(failed))
        raise ConfigError(f"{root}: no clip could be spotted (see the failures above)")
    run_settings = {
        "dataset": f"{kind} ({root})",
        "methods": ", ".join(f"{m} ({get_method(m).follows})" for m in methods),
        "span": "every frame of the clip's folder" if settings.whole_clip else "onset..offset",
        "window": (window or "0.2 s at the clip's rate") if settings.whole_clip else "none",
        "clips scored": len({(r.dataset, r.subject, r.sample) for r in rows}),
        "frame rate": f"{fps:g} fps (--fps)" if fps else "each dataset's",
        "clips left out (no annotated apex, or 1 frame)": len(left_out),
        "clips that failed": len(failed),
        "seconds": round(time.perf_counter() - started, 1),
        "command": shlex.join(["merkit", *sys.argv[1:]]),
    }
    metrics = write_spotting_run(folder, rows, run_settings)
    print_table(figures_table(metrics, f"merkit spot {kind}: spotted vs annotated apex"))
    if failed:
        print_table(failures_table(failed))
    if skipped:
        print_table(failures_table(skipped, "Left out"))
    console.print(f"report: {folder / REPORT_FILE} and {folder / HTML_FILE}", highlight=False)
