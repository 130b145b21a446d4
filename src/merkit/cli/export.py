"""`merkit export`: a checkpoint as ONNX, with its class names and preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from merkit.cli.app import app, console
from merkit.io import check_writable


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
