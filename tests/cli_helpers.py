"""Running `merkit` in-process from tests: exit code and output, on consoles wide enough that
rich never wraps a one-line message."""

from __future__ import annotations

import pytest

from merkit.cli import main
from merkit.cli.app import console, err_console


def widen_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at 80 columns when not on a terminal; tests read whole lines."""
    monkeypatch.setattr(console, "width", 1000)
    monkeypatch.setattr(err_console, "width", 1000)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `merkit ARGV`."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
