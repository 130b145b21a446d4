"""What `merkit serve` offers to open: checkpoints and run folders, found under `--runs`.

Only what a scan listed can be opened: the page names a run or a model by an id that this module
handed out, never by a path, so no request can reach a file outside `--runs` (or outside the
`--model` files given). Run folders are read, never written: a run's report and a comparison are
rendered by `merkit report`'s own functions into a scratch folder that is removed afterwards.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from merkit.errors import MerkitError
from merkit.evaluation.comparison import COMPARISON_FILE, compare_runs, write_comparison
from merkit.evaluation.report import render_run
from merkit.evaluation.run_folder import HTML_FILE, RUN_FILE

MODEL_SUFFIXES = (".pt", ".onnx")
SCAN_DEPTH = 4  # folder levels below --runs searched for run folders and checkpoints


class NotFound(MerkitError):
    """An id that no scan handed out (a stale page, or a forged request)."""


@dataclass(frozen=True)
class ModelEntry:
    """A checkpoint the page can choose: `label` is what the user sees, `id` what it sends."""

    id: str
    label: str
    path: Path


@dataclass(frozen=True)
class RunEntry:
    id: str  # the run folder's path relative to --runs, with "/" separators
    path: Path


def _id(path: Path) -> str:
    return "m" + hashlib.sha1(str(path).encode()).hexdigest()[:12]


def _walk(root: Path) -> Iterator[tuple[Path, list[str]]]:
    """(folder, file names) under `root`, SCAN_DEPTH levels deep, hidden folders and symbolic
    links to folders skipped (a link could lead out of `root`)."""
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        depth = len(here.relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here / d).is_symlink())
        if depth >= SCAN_DEPTH:
            dirs[:] = []
        yield here, sorted(files)


class Catalog:
    """The checkpoints given on the command line plus those found under `runs`, and the run
    folders under `runs`. Scans again on every listing, so runs finished later appear."""

    def __init__(self, runs: Path | None, models: Sequence[Path] = ()) -> None:
        self.root = runs.resolve() if runs is not None else None
        self.given = [Path(p).resolve() for p in models]

    def _scan(self) -> tuple[list[Path], list[Path]]:
        """Run folders and checkpoint files under the root (resolved, inside the root)."""
        if self.root is None:
            return [], []
        runs, checkpoints = [], []
        for folder, files in _walk(self.root):
            if RUN_FILE in files:
                runs.append(folder)
            checkpoints += [
                folder / name
                for name in files
                if Path(name).suffix.lower() in MODEL_SUFFIXES and not (folder / name).is_symlink()
            ]
        return runs, checkpoints

    def _label(self, path: Path) -> str:
        if self.root is not None and path.is_relative_to(self.root):
            return path.relative_to(self.root).as_posix()
        return str(path)

    def models(self) -> list[ModelEntry]:
        """Given checkpoints first (in order), then those found under --runs."""
        found = self._scan()[1]
        paths = list(dict.fromkeys([*self.given, *found]))
        return [ModelEntry(_id(p), self._label(p), p) for p in paths]

    def model(self, model_id: str) -> ModelEntry:
        for entry in self.models():
            if entry.id == model_id:
                return entry
        raise NotFound(f"no model {model_id!r} is offered here; reload the page")

    def run_entries(self) -> list[RunEntry]:
        folders = self._scan()[0]
        return [RunEntry(self._label(folder), folder) for folder in folders]

    def run(self, run_id: str) -> RunEntry:
        for entry in self.run_entries():
            if entry.id == run_id:
                return entry
        where = self.root if self.root is not None else "nowhere (no --runs folder given)"
        raise NotFound(f"no run folder {run_id!r} under {where}")

    def runs(self) -> list[dict[str, Any]]:
        """One row per run folder: its comparison entry, or why it cannot be shown yet."""
        rows = []
        for entry in self.run_entries():
            try:
                row = {"id": entry.id, **compare_runs([entry.path])[0], "error": None}
            except MerkitError as exc:  # unfinished or damaged: listed with the reason
                row = {"id": entry.id, "name": entry.path.name, "error": str(exc)}
            row["run"] = entry.id
            rows.append(row)
        return rows

    def report_html(self, run_id: str) -> str:
        """The run's report.html as `merkit report RUN` renders it, from a scratch copy of the
        run's files (render_run writes beside its inputs; the served folder stays untouched)."""
        source = self.run(run_id).path
        with tempfile.TemporaryDirectory(prefix="merkit-serve-report-") as scratch:
            copy = Path(scratch) / source.name
            copy.mkdir()
            for item in source.iterdir():
                if item.is_file() and not item.is_symlink():
                    shutil.copy2(item, copy / item.name)
            render_run(copy)
            return (copy / HTML_FILE).read_text(encoding="utf-8")

    def comparison_html(self, run_ids: Sequence[str]) -> str:
        """comparison.html of the runs, as `merkit report RUN1 RUN2 ...` writes it."""
        chosen = list(dict.fromkeys(run_ids))
        if len(chosen) < 2:
            raise MerkitError(f"a comparison needs at least two runs; {len(chosen)} chosen")
        folders = [self.run(run_id).path for run_id in chosen]
        with tempfile.TemporaryDirectory(prefix="merkit-serve-compare-") as scratch:
            write_comparison(folders, scratch)
            return (Path(scratch) / COMPARISON_FILE.format(ext="html")).read_text(encoding="utf-8")
