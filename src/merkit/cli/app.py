"""The shared typer app and consoles, imported by every command module, and table printing."""

from __future__ import annotations

import io

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperOption

import merkit

app = typer.Typer(
    name="merkit",
    help="Facial micro-expression recognition: datasets, preprocessing, models, honest evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_value_type = TyperOption.display_type_rich


def _flag_shows_no_type(option: TyperOption, ctx: object) -> str | None:
    """A flag takes no value, so its help shows none (typer would print `<bool>`)."""
    return None if option.is_flag else _value_type(option, ctx)


TyperOption.display_type_rich = _flag_shows_no_type


def _version(shown: bool) -> None:
    if shown:
        typer.echo(f"merkit {merkit.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print merkit's version."
    ),
) -> None:
    """Facial micro-expression recognition: datasets, preprocessing, models, honest evaluation."""


# Markup off: user text (paths such as `res[old].csv`, messages, table cells) prints literally;
# styled words go through `say`.
console = Console(markup=False)
err_console = Console(stderr=True, markup=False)


def say(label: str, style: str, text: str, to: Console | None = None) -> None:
    """`label` in `style` (e.g. "error:" in bold red), then `text` exactly as given."""
    (to or err_console).print(
        Text(label, style=style) + Text(" " + text), highlight=False, soft_wrap=True
    )


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
    plain = Console(
        file=io.StringIO(), width=1_000_000, color_system=None, highlight=False, markup=False
    )
    plain.print(table)
    lines = [line.rstrip() for line in plain.file.getvalue().splitlines()]
    to.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
