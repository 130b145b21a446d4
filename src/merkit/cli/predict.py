"""`merkit predict`: spot, time and classify the micro-expression in videos or frame folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from merkit.cli import options
from merkit.cli.app import app, console, say
from merkit.cli.tables import check_json_target, progress_bar, write_json
from merkit.errors import ConfigError, DataLayoutError
from merkit.inference.wording import assumed_rate, moments
from merkit.io import check_writable


def summary_line(result: dict[str, Any]) -> str:
    """One clip as a person reads it: the class and how sure, when (frames and time into the
    clip), and where its picture went."""
    if "error" in result:
        return f"{Path(result['input']).name}: failed ({result['error']})"
    assumed = assumed_rate(result)
    line = (
        f"{Path(result['input']).name}: {result['predicted']} "
        f"(probability {result['confidence']:.2f}); {moments(result)}"
        + (f" ({assumed})" if assumed else "")
    )
    picture = result.get("picture") or {}
    return line + (f"; picture {picture['path']}" if picture.get("path") else "")


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
    json_path: options.JsonFile = None,
    picture: Annotated[
        Path | None,
        typer.Option(help="Folder for a PNG per input: apex face, flow, attention, motion curve."),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Processes predicting inputs (each prepares its own clip).")
    ] = 1,
    device: options.Device = None,
    quiet: options.Quiet = False,
) -> None:
    """Spot, time and classify the micro-expression in each video or frame folder."""
    import torch

    from merkit.inference.predictor import predict_many
    from merkit.preprocess.spotting import check_fps
    from merkit.training.devices import resolve_device

    device = device or "auto"
    resolve_device(device)  # a device this machine lacks: refused before any clip is read
    if workers < 1:
        raise ConfigError(f"--workers {workers}: expected at least 1")
    if fps is not None:
        check_fps(fps)
    check_json_target(json_path)
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
    shown = not quiet and len(inputs) > 1  # one clip: no bar (not even its blank line)
    with progress_bar(disable=not shown) as bar:
        task = bar.add_task("predicting", total=len(inputs))
        outcomes = predict_many(
            model,
            inputs,
            workers=workers,
            on_done=lambda: bar.advance(task),
            device=device,
            **options,
        )
    results, failed = [], 0
    for path, outcome in zip(inputs, outcomes, strict=True):
        if isinstance(outcome, str):
            failed += 1
            say("error:", "bold red", outcome)
            results.append({"input": str(path), "error": outcome})
        else:
            results.append(outcome)
    if json_path is None or str(json_path) != "-":
        for result in results:
            console.print(summary_line(result), soft_wrap=True, highlight=False)
    if json_path is not None:
        write_json(results[0] if len(results) == 1 else results, json_path)
    if failed:  # after the results: one bad input must not hide the others' output
        raise DataLayoutError(f"{failed} of {len(inputs)} inputs failed (see the errors above)")
