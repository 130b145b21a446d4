"""`merkit import`: published per-fold weights -> merkit checkpoints that record their input
convention."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from merkit.cli.app import app, console


@app.command("import")
def import_command(
    format_name: Annotated[
        str, typer.Argument(metavar="FORMAT", help="Architecture of the weights: ststnet.")
    ],
    weights_dir: Annotated[
        Path,
        typer.Argument(help="Folder of per-fold weights, {subject}.pth (fold = subject left out)."),
    ],
    out: Annotated[Path, typer.Option(help="Folder for the merkit checkpoints ({subject}.pt).")],
) -> None:
    """Turn published per-fold weights into merkit checkpoints recording their input convention."""
    from merkit.inference.importing import import_weights

    written = import_weights(format_name, weights_dir, out)
    console.print(
        f"{len(written)} checkpoints written to {out} ({format_name} weights; each records "
        "its input convention and the subject its fold left out)",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
