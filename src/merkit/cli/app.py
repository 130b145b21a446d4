"""The shared typer app and consoles, imported by every command module, and table printing."""

from __future__ import annotations

import io

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="merkit",
    help="Facial micro-expression recognition: datasets, preprocessing, models, honest evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def print_table(table: Table, to: Console | None = None) -> None:
    """A boxed table on a terminal wide enough for it; elsewhere (a pipe, a file, a narrow
    terminal) plain aligned rows, one line each, so no cell is wrapped into a column of
    single characters or cut short (`merkit models | grep offapexnet` finds the whole row)."""
    to = to or console
    unbounded = to.options.update_width(1_000_000)
    if to.is_terminal and to.measure(table, options=unbounded).maximum <= to.width:
        to.print(table)
        return
    table.box = None
    for column in table.columns:
        column.no_wrap = True
    plain = Console(file=io.StringIO(), width=1_000_000, color_system=None, highlight=False)
    plain.print(table)
    lines = [line.rstrip() for line in plain.file.getvalue().splitlines()]
    to.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
