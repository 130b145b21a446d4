"""One report document, two renderings: Markdown and HTML must say the same things."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from merkit.evaluation import document as doc
from merkit.evaluation.report import render_run
from test_html_report import check_page
from test_report import write_run


def tiny_png() -> bytes:
    ok, data = cv2.imencode(".png", np.zeros((2, 2), np.uint8))
    assert ok
    return data.tobytes()


def sample_document() -> doc.Document:
    return doc.Document(
        "merkit run: demo",
        [
            doc.Facts([("dataset", "casme2 (/data/CASME II)"), ("seeds", "0, 1")]),
            doc.Heading("Results"),
            doc.Table(("scope", "UF1"), [["overall", "0.7173"], ["samm", "0.5508"]], [False, True]),
            doc.Paragraph("kfold puts 3 subjects in both train and test.", "warning", "Warning:"),
            doc.Paragraph("loso is subject-independent.", "ok"),
            doc.Bullets(["samm/006/x: cannot decode", "smic/s01/y: no face"]),
            doc.Heading("Per class", 3),
            doc.Image(tiny_png(), "confusion matrix", "confusion.png"),
        ],
    )


def test_every_block_says_the_same_in_markdown_and_html() -> None:
    document = sample_document()
    markdown = doc.to_markdown(document)
    page = check_page(doc.to_html(document))
    html_text = " ".join(" ".join(page.text).split())
    expected = [
        "merkit run: demo",
        "dataset",
        "casme2 (/data/CASME II)",
        "seeds",
        "Results",
        "scope",
        "0.7173",
        "samm",
        "0.5508",
        "Warning:",
        "kfold puts 3 subjects in both train and test.",
        "loso is subject-independent.",
        "samm/006/x: cannot decode",
        "smic/s01/y: no face",
        "Per class",
    ]
    for text in expected:
        assert text in markdown, text
        assert text in html_text, text
    assert "![confusion matrix](confusion.png)" in markdown  # linked beside the file
    assert len(page.images) == 1  # carried inside the page
    assert "**Warning:** kfold puts" in markdown and "### Per class" in markdown
    assert '<p class="warning">Warning: kfold puts' in doc.to_html(document)
    assert '<tr class="leak">' in doc.to_html(document)  # the highlighted row, shaded


def test_the_run_report_renders_the_same_facts_and_figures_twice(tmp_path: Path) -> None:
    run = tmp_path / "cabm-loso"
    write_run(run, leaking=True)
    render_run(run)
    markdown = (run / "report.md").read_text(encoding="utf-8")
    page = check_page((run / "report.html").read_text(encoding="utf-8"))
    html_text = " ".join(" ".join(page.text).split())
    facts = re.findall(r"^- \*\*(.+?)\*\*: (.*)$", markdown, flags=re.M)
    cells = [c.strip() for line in markdown.splitlines() if line.startswith("| ")
             for c in line.strip("|").split("|")]  # fmt: skip
    headings = re.findall(r"^#+ (.*)$", markdown, flags=re.M)
    assert len(facts) >= 10 and len(cells) > 40 and "Per subject" in headings
    for text in [*(t for fact in facts for t in fact), *cells, *headings]:
        assert " ".join(text.split()) in html_text, text
