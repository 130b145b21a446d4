"""The shared typer app and consoles, imported by every command module."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="merkit",
    help="Facial micro-expression recognition: datasets, preprocessing, models, honest evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
