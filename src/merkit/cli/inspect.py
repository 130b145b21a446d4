"""`merkit inspect`: what a loader reads in a dataset folder, and the problems it found."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from merkit.cli import options
from merkit.cli.app import app, print_table
from merkit.cli.tables import check_json_target, write_json


def counts_table(title: str, rows: dict[str, dict[str, int]], first: str) -> Table:
    """One row per key of `rows` (a taxonomy or a source), one column per class."""
    classes = list(dict.fromkeys(c for counts in rows.values() for c in counts))
    table = Table(title=title)
    table.add_column(first)
    for name in (*classes, "total"):
        table.add_column(name, justify="right")
    for key, counts in rows.items():
        cells = [str(counts.get(c, "")) for c in classes]
        table.add_row(key, *cells, str(sum(counts.values())))
    return table


def overview_table(summary: dict) -> Table:
    table = Table(title=f"{summary['title']} ({summary['dataset']}) in {summary['root']}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("taxonomy", summary["taxonomy"])
    table.add_row("samples", str(summary["samples"]))
    table.add_row("subjects", str(summary["subjects"]))
    for source, apex in summary["apex"].items():
        table.add_row(f"apex {source}", str(apex))
    table.add_row("skipped items", str(len(summary["skipped"])))
    table.add_row("fingerprint", summary["fingerprint"])
    return table


def problems_table(summary: dict, limit: int) -> Table:
    """Skipped items with their reasons, then notes; at most `limit` rows of each."""
    table = Table(title="Problems found (skipped items and notes)")
    table.add_column("item", overflow="fold")
    table.add_column("reason", overflow="fold")
    for kind, entries in (
        ("skipped", [(s["item"], s["reason"]) for s in summary["skipped"]]),
        ("notes", [("note", n) for n in summary["notes"]]),
    ):
        for item, reason in entries[:limit]:
            table.add_row(item, reason)
        if len(entries) > limit:
            table.add_row("...", f"{len(entries) - limit} more {kind} (see --json)")
    return table


@app.command()
def inspect(
    kind: Annotated[str, typer.Argument(help="Dataset name (see `merkit datasets`).")],
    root: Annotated[Path, typer.Argument(help="Folder holding the dataset release.")],
    taxonomy: options.Taxonomy = None,
    json_path: options.JsonFile = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option", "-o", help="Loader option KEY=VALUE, repeatable (e.g. frames=cropped)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Problems to print at most, per kind.")] = 20,
) -> None:
    """Load a dataset and report samples, subjects, classes, apex provenance and problems."""
    from merkit.data.summary import inspect_dataset, parse_options

    check_json_target(json_path)
    summary = inspect_dataset(kind, root, taxonomy, **parse_options(kind, option or []))
    if json_path is not None:
        write_json(summary, json_path)
        if str(json_path) == "-":
            return
    print_table(overview_table(summary))
    print_table(counts_table("Classes per taxonomy", summary["classes_per_taxonomy"], "taxonomy"))
    sources = summary["by_source"]
    if len(sources) > 1:
        rows = {f"{s} ({v['subjects']} subjects)": v["classes"] for s, v in sources.items()}
        print_table(counts_table(f"Classes per source ({summary['taxonomy']})", rows, "source"))
    if summary["skipped"] or summary["notes"]:
        print_table(problems_table(summary, limit))
