"""report.html / comparison.html / audit.html are one self-contained, well-formed page each."""

from __future__ import annotations

import base64
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from browser import require_programs
from merkit.evaluation import html
from merkit.evaluation.comparison import write_comparison
from merkit.evaluation.report import render_run
from test_report import write_run

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}
# attributes that make a browser fetch something
FETCHING = {"src", "href", "srcset", "poster", "data", "action", "background"}


class PageChecker(HTMLParser):
    """Collects nesting errors, external references, images and scripts of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)
        for name, value in attrs:
            if name in FETCHING and value is not None and not value.startswith("data:"):
                self.errors.append(f"<{tag} {name}={value!r}> refers outside the page")
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_page(text: str) -> PageChecker:
    assert text.startswith("<!DOCTYPE html>")
    checker = PageChecker()
    checker.feed(text)
    checker.close()
    assert checker.errors == []
    assert checker.stack == [], f"unclosed tags {checker.stack}"
    assert "script" not in checker.tags and "link" not in checker.tags
    assert "url(" not in text and "@import" not in text  # no CSS fetches
    for src in checker.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    return checker


def test_builders_escape_text() -> None:
    fragment = html.table(["a<b"], [["<script>x</script>"]], [True])
    assert "<script>" not in fragment and "&lt;script&gt;" in fragment
    assert '<tr class="leak">' in fragment
    marked = html.table(["run", "UF1"], [["a", "0.5"], ["b", "0.7"]], text_columns=1, best={(1, 1)})
    assert '<td class="text">b</td><td class="best">0.7</td>' in marked
    assert html.paragraph("x & y", "warning") == '<p class="warning">x &amp; y</p>'


def test_run_page_is_self_contained(tmp_path: Path) -> None:
    run = tmp_path / "cabm-loso"
    write_run(run, leaking=True)
    (run / "curves.json").write_text('{"train_loss": [1.0, 0.6, 0.4], "val_uf1": [0.3, 0.5, 0.6]}')
    render_run(run)
    checker = check_page((run / "report.html").read_text(encoding="utf-8"))
    assert len(checker.images) == 2  # confusion matrix and training curves
    text = " ".join(checker.text)
    for expected in ("Per class", "Per subject", "Training curves", "Warning: subject leakage",
                     "samm/s1", "abc123", "0.7222"):  # fmt: skip
        assert expected in text


def test_comparison_page_marks_leaking_runs(tmp_path: Path) -> None:
    write_run(tmp_path / "loso")
    write_run(tmp_path / "kfold", leaking=True)
    write_comparison([tmp_path / "loso", tmp_path / "kfold"], tmp_path / "cmp")
    page = (tmp_path / "cmp" / "comparison.html").read_text(encoding="utf-8")
    check_page(page)
    assert page.count('<tr class="leak">') == 3 and "⚠ leaks subjects" in page  # one a table
    assert page.count('<td class="best">') == 3 * 3 + 2 * 3  # the honest run: 3 scopes, 3 classes


def chromium_dump(page: Path, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            require_programs("chromium")[0],
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            page.as_uri(),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_run_page_opens_in_headless_chromium(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run)
    render_run(run)
    result = chromium_dump(run / "report.html", tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "net::ERR" not in result.stderr  # nothing the page asked for failed to load
    dom = result.stdout
    assert "<h1>merkit run: run</h1>" in dom and "Per subject" in dom
    assert dom.count("data:image/png;base64,") == 1
