"""`merkit predict`: spot, time and classify the micro-expression in videos or frame folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from merkit.cli import options
from merkit.cli.app import app, err_console, say
from merkit.cli.tables import progress_bar
from merkit.errors import ConfigError, DataLayoutError
from merkit.io import check_writable


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
        int | None, typer.Option(help="A movement's length in frames (default 0.2 s of video).")
    ] = None,
    spotting: options.Spotting = None,
    fps: options.Fps = None,
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
    from merkit.preprocess.spotting import check_fps

    if workers < 1:
        raise ConfigError(f"--workers {workers}: expected at least 1")
    if fps is not None:
        check_fps(fps)
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
        "fps": fps,
        "picture_dir": picture,
    }
    with progress_bar() as bar:
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
