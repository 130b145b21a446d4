"""A report as one document, rendered to Markdown and to a self-contained HTML page.

Every report (a run's, a comparison of runs, the leakage audit's) is built once as a `Document`
of a few kinds of block, so its two renderings cannot drift apart: a new section is one more
block, shown in both. What differs is only how a block looks: a Markdown image links the PNG
beside the file, the HTML page carries the PNG itself; warnings are bold in Markdown and shaded
in HTML; highlighted table rows (leaking protocols) are shaded in HTML, and cells marked best
are bold in both.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from merkit.evaluation import html


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Facts:
    """Key: value lines (what ran, on which data)."""

    items: Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    highlight: Sequence[bool] = ()  # rows to shade (HTML), e.g. leaking protocols
    text_columns: int = 1  # leading left-aligned columns (HTML)
    best: Collection[tuple[int, int]] = ()  # (row, column) of cells marked best: bold


@dataclass(frozen=True)
class Paragraph:
    """Text; `kind` "warning" or "ok" marks a note, `lead` is said first and stands out."""

    text: str
    kind: str = ""
    lead: str = ""


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Image:
    """A PNG: linked as `file` from Markdown (written beside it), inlined in HTML."""

    png: bytes
    alt: str
    file: str


Block = Heading | Facts | Table | Paragraph | Bullets | Image


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Document:
        self.blocks.extend(blocks)
        return self


def to_markdown(document: Document) -> str:
    """The document as Markdown: a blank line after every block."""
    lines = [f"# {document.title}", ""]
    for block in document.blocks:
        lines += [*_markdown(block), ""]
    return "\n".join(lines)


def _markdown(block: Block) -> list[str]:
    if isinstance(block, Heading):
        return [f"{'#' * block.level} {block.text}"]
    if isinstance(block, Facts):
        return [f"- **{key}**: {value}" for key, value in block.items]
    if isinstance(block, Table):
        rows = [
            [f"**{cell}**" if (r, c) in block.best else cell for c, cell in enumerate(row)]
            for r, row in enumerate(block.rows)
        ]
        return markdown_table(block.header, rows)
    if isinstance(block, Paragraph):
        return [f"**{block.lead}** {block.text}" if block.lead else block.text]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    return [f"![{block.alt}]({block.file})"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def to_html(document: Document) -> str:
    """The document as one self-contained HTML page (see `merkit.evaluation.html`)."""
    return html.page(document.title, [_html(block) for block in document.blocks])


def _html(block: Block) -> str:
    if isinstance(block, Heading):
        return html.heading(block.text, block.level)
    if isinstance(block, Facts):
        return html.definition_list(block.items)
    if isinstance(block, Table):
        highlight = list(block.highlight) or None
        return html.table(block.header, block.rows, highlight, block.text_columns, block.best)
    if isinstance(block, Paragraph):
        text = f"{block.lead} {block.text}" if block.lead else block.text
        return html.paragraph(text, block.kind)
    if isinstance(block, Bullets):
        return html.bullet_list(block.items)
    return html.image(block.png, block.alt)
