"""MkDocs hook: the CLI reference page is generated from the `merkit` typer app at build time.

`reference/cli.md` holds a marker line; this hook replaces it with one section per command
(usage, arguments, options with their help and defaults), read from the same objects that
`merkit COMMAND --help` prints, so the page cannot drift from the CLI.

Why a hook and not a plugin: typer 0.29 vendors its own copy of click (`typer._click`), so
mkdocs-click, which expects `click.Command` objects, cannot read the app, and mkdocs-typer2's
default engine shells out to a `typer` executable and leaves the page empty when that fails.
This hook imports the app in-process, needs nothing beyond typer itself, works offline, and
fails the build loudly (a Python error) if the app cannot be read.
"""

from __future__ import annotations

import re

MARKER = "<!-- merkit-cli-reference -->"
PAGE = "reference/cli.md"


def _cell(text: str) -> str:
    """Text fit for one Markdown table cell."""
    text = " ".join(text.split())
    return text.replace("|", "\\|")


def _help_rows(command, ctx, kind: str) -> list[tuple[str, str]]:
    rows = []
    for param in command.get_params(ctx):
        if param.param_type_name != kind:
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        if names == "--help":  # every command has it; the page says so once
            continue
        rows.append((names, help_text or ""))
    return rows


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    if not rows:
        return ""
    lines = [f"**{title}**", "", "| name | meaning |", "| --- | --- |"]
    for names, help_text in rows:
        # Metavars such as <path> stay inside the code span; square-bracket notes of click
        # ("[default: 28]", "[required]") become plain text after the description.
        lines.append(f"| `{_cell(names)}` | {_cell(help_text)} |")
    return "\n".join(lines) + "\n\n"


def _section(command, parent_ctx, name: str) -> str:
    ctx = command.make_context(name, [], parent=parent_ctx, resilient_parsing=True)
    usage = " ".join(command.collect_usage_pieces(ctx))
    text = f"## `merkit {name}` {{#{name}}}\n\n"
    if command.help:
        text += _docstring_paragraphs(command.help) + "\n\n"
    text += f"```console\n$ merkit {name} {usage}\n```\n\n"
    text += _table("Arguments", _help_rows(command, ctx, "argument"))
    text += _table("Options", _help_rows(command, ctx, "option"))
    return text


def _docstring_paragraphs(help_text: str) -> str:
    """A command's docstring as Markdown paragraphs (click's \\b markers dropped)."""
    help_text = help_text.replace("\b", "")
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", help_text.strip())]
    return "\n\n".join(p for p in paragraphs if p)


def render() -> str:
    """Markdown for every command of the `merkit` app, in the order `merkit --help` lists them."""
    import typer

    from merkit.cli import app

    group = typer.main.get_command(app)
    ctx = group.make_context("merkit", [], resilient_parsing=True)
    names = group.list_commands(ctx)
    if not names:
        raise RuntimeError("the merkit app lists no commands: the CLI reference would be empty")
    overview = ["| command | what it does |", "| --- | --- |"]
    sections = []
    for name in names:
        command = group.get_command(ctx, name)
        overview.append(f"| [`{name}`](#{name}) | {_cell(command.get_short_help_str(limit=200))} |")
        sections.append(_section(command, ctx, name))
    return "\n".join(overview) + "\n\n" + "\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001  (MkDocs API)
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise RuntimeError(f"{PAGE}: the marker {MARKER} is missing")
    return markdown.replace(MARKER, render())
