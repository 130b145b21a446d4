"""Self-contained HTML pages: inline CSS, images as base64 data URIs, no scripts, no links out.

A report must open the same on an air-gapped machine, in a mail attachment, or years later, so
nothing here refers to a file or a network address. The builders return escaped HTML fragments;
`page` wraps them into one document.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Sequence
from html import escape
from typing import Any

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #1d2430; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #d0d7e2; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #d0d7e2; padding: .25rem .6rem; text-align: right; }
th { background: #eef2f7; }
td.text, th.text { text-align: left; }
tr.leak td { background: #fff4e0; }
td.best { font-weight: 700; background: #dff1e4; }
.lead { font-size: 1.1rem; }
nav.back { margin-bottom: 1rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; }
dl.meta dt { font-weight: 600; }
dl.meta dd { margin: 0; word-break: break-all; }
.warning { background: #fff4e0; border-left: 4px solid #e08a00; padding: .6rem .9rem; }
.ok { background: #eaf6ec; border-left: 4px solid #2e8b57; padding: .6rem .9rem; }
img { max-width: 100%; height: auto; }
.scroll { overflow-x: auto; }
"""


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image(png: bytes, alt: str) -> str:
    """An <img> holding the PNG itself (no file beside the page)."""
    return f'<img src="{png_data_uri(png)}" alt="{escape(alt)}">'


def heading(text: str, level: int = 2) -> str:
    return f"<h{level}>{escape(text)}</h{level}>"


def paragraph(text: str, kind: str = "") -> str:
    """A paragraph; `kind` "warning" or "ok" draws it as a coloured note."""
    css = f' class="{kind}"' if kind else ""
    return f"<p{css}>{escape(text)}</p>"


def definition_list(items: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in items)
    return f'<dl class="meta">{body}</dl>'


def bullet_list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    highlight: Sequence[bool] | None = None,
    text_columns: int = 1,
    best: Collection[tuple[int, int]] = (),
) -> str:
    """A table; the first `text_columns` are left-aligned, `highlight`ed rows shaded (leaks),
    the `best` cells (row, column) bold and shaded."""
    flags = highlight or [False] * len(rows)

    def cell(tag: str, i: int, value: object, marked: bool = False) -> str:
        classes = " ".join(c for c, on in (("text", i < text_columns), ("best", marked)) if on)
        css = f' class="{classes}"' if classes else ""
        return f"<{tag}{css}>{escape(str(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(
        ('<tr class="leak">' if flag else "<tr>")
        + "".join(cell("td", i, c, (r, i) in best) for i, c in enumerate(row))
        + "</tr>"
        for r, (row, flag) in enumerate(zip(rows, flags, strict=True))
    )
    table_html = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table_html}</div>'


def page(title: str, body: Sequence[str]) -> str:
    """One complete HTML5 document from body fragments."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{heading(title, 1)}\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def linked_css(document: str, href: str) -> str:
    """A `page` whose stylesheet is linked from `href` instead of written inline: for a server
    whose Content-Security-Policy runs no inline style."""
    link = f'<link rel="stylesheet" href="{escape(href)}">'
    return document.replace(f"<style>{CSS}</style>", link, 1)


def with_back_link(document: str, href: str, text: str) -> str:
    """A `page` with a link back (to where a server lists it) above its title: a file opened on
    its own has no such place, so only a server adds it."""
    link = f'<nav class="back"><a href="{escape(href)}">{escape(text)}</a></nav>'
    return document.replace("<body>\n", f"<body>\n{link}\n", 1)
