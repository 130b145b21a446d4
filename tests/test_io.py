"""Atomic writes: whole files or none, with the permissions of any newly created file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from merkit.io import write_atomic, write_text_atomic


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_written_file_gets_the_usual_permissions_not_owner_only(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "report.md", "# run\n")
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == stat.S_IMODE(reference.stat().st_mode) == 0o666 & ~_umask()
    assert path.read_text() == "# run\n"


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "metrics.json", "old")

    def broken(handle: object) -> None:
        handle.write("half")  # type: ignore[attr-defined]
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        write_atomic(path, broken)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
