"""`merkit datasets`: the supported datasets and the layout each loader reads."""

from __future__ import annotations

from rich.table import Table

from merkit.cli.app import app, print_table


@app.command()
def datasets() -> None:
    """List the supported datasets, their taxonomies and the layout each loader expects."""
    from merkit.data.registry import list_datasets

    table = Table(title="Supported datasets")
    for column in ("name", "title", "taxonomies", "expected layout"):
        table.add_column(column, overflow="fold")
    for info in list_datasets():
        table.add_row(info.name, info.title, ", ".join(info.taxonomies), info.layout)
    print_table(table)
