"""What `merkit serve` offers to open: checkpoints and run folders, found under `--runs`.

Only what a scan listed can be opened: the page names a run or a model by an id that this module
handed out, never by a path, so no request can reach a file outside `--runs` (or outside the
`--model` files given). Run folders are read, never written: their files are copied into a
scratch folder (removed afterwards) and listed, reported and compared from there by `merkit
report`'s own functions. A symbolic link (to a folder or a file) is never followed: it could
lead out of `--runs`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from merkit.errors import MerkitError
from merkit.evaluation.comparison import compare_runs, comparison_document
from merkit.evaluation.document import to_html
from merkit.evaluation.report import render_run
from merkit.evaluation.run_folder import (
    CONFUSION_FILE,
    CURVES_PNG,
    HTML_FILE,
    METRICS_FILE,
    REPORT_FILE,
    RUN_FILE,
)
from merkit.inference.checkpoint import CheckpointMeta, read_meta
from merkit.inference.export import read_onnx_meta
from merkit.serve.uploads import folder_prefix

MODEL_SUFFIXES = (".pt", ".onnx")
SCAN_DEPTH = 4  # folder levels below --runs searched for run folders and checkpoints
# What `render_run` writes from a run's other files: never read, so never copied.
RENDERED = (METRICS_FILE, CONFUSION_FILE, REPORT_FILE, HTML_FILE, CURVES_PNG)


class NotFound(MerkitError):
    """An id that no scan handed out (a stale page, or a forged request)."""


@dataclass(frozen=True)
class ModelEntry:
    """A checkpoint the page can choose: `about` (the model and its training data) and `label`
    (the file) are what the user sees, `id` what the page sends."""

    id: str
    label: str
    path: Path
    about: str = ""


@dataclass(frozen=True)
class RunEntry:
    id: str  # the run folder's path relative to --runs, with "/" separators
    path: Path


def _id(path: Path) -> str:
    return "m" + hashlib.sha1(str(path).encode()).hexdigest()[:12]


def describe(meta: CheckpointMeta) -> str:
    """A model and what it was trained on, in words: "cabm trained on casme2 (247 clips;
    classes happiness, repression, ...)"."""
    data = meta.dataset or "unnamed data"
    clips = f"{meta.n_samples} clips; " if meta.n_samples else ""
    return f"{meta.model} trained on {data} ({clips}classes {', '.join(meta.class_names)})"


def read_about(path: Path) -> str:
    """`describe` of the model file's metadata (its weights stay on disk), or why there is none."""
    try:
        meta = read_onnx_meta(path) if path.suffix.lower() == ".onnx" else read_meta(path)
    except Exception:  # a MerkitError, or whatever a foreign file makes torch or onnx raise
        return "not a readable merkit model"
    return describe(meta)


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


def _copy_files(source: Path, target: Path) -> Path:
    """The plain files of the run folder `source` (not its subfolders, not what rendering
    rewrites) copied into `target`. Each is opened without following a symbolic link, and
    without waiting on a pipe, so a linked file is left out however it got there."""
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name in RENDERED:
            continue
        try:
            handle = os.open(item, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:  # a link (the kernel refuses to follow it) or an unreadable file
            continue
        with os.fdopen(handle, "rb") as data:
            if stat.S_ISREG(os.fstat(handle).st_mode):
                with (target / item.name).open("wb") as out:
                    shutil.copyfileobj(data, out)
    return target


@contextmanager
def _copies(entries: Sequence[RunEntry]) -> Iterator[list[Path]]:
    """Scratch copies of the runs' folders (`_copy_files`), removed on exit."""
    with tempfile.TemporaryDirectory(prefix=folder_prefix()) as scratch:
        yield [
            _copy_files(entry.path, Path(scratch) / str(i) / entry.path.name)
            for i, entry in enumerate(entries)
        ]


@contextmanager
def _named(entry: RunEntry, copy: Path) -> Iterator[None]:
    """An error met while reading the copy names the run's own folder, not the scratch one."""
    try:
        yield
    except MerkitError as exc:
        raise MerkitError(str(exc).replace(str(copy), str(entry.path))) from None


def _figures(entry: RunEntry, copy: Path) -> dict[str, Any]:
    """The run's entry in a comparison, read from its copy."""
    with _named(entry, copy):
        return {**compare_runs([copy])[0], "run": str(entry.path)}


class Catalog:
    """The checkpoints given on the command line plus those found under `runs`, and the run
    folders under `runs`. Scans again on every listing, so runs finished later appear."""

    def __init__(self, runs: Path | None, models: Sequence[Path] = ()) -> None:
        self.root = runs.resolve() if runs is not None else None
        self.given = [Path(p).resolve() for p in models]
        self._about: dict[tuple[Path, int, int], str] = {}  # by path, mtime and size

    def _describe(self, path: Path) -> str:
        """`read_about`, read again only when the file changed."""
        try:
            info = path.stat()
        except OSError:
            return "not a readable merkit model"
        key = (path, info.st_mtime_ns, info.st_size)
        if key not in self._about:
            self._about[key] = read_about(path)
        return self._about[key]

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
        return [ModelEntry(_id(p), self._label(p), p, self._describe(p)) for p in paths]

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
        entries, rows = self.run_entries(), []
        with _copies(entries) as copies:
            for entry, copy in zip(entries, copies, strict=True):
                try:
                    row = {"id": entry.id, **_figures(entry, copy), "error": None}
                except MerkitError as exc:  # unfinished or damaged: listed with the reason
                    row = {"id": entry.id, "name": entry.path.name, "error": str(exc)}
                row["run"] = entry.id
                rows.append(row)
        return rows

    def report_html(self, run_id: str) -> str:
        """The run's report.html as `merkit report RUN` renders it, from a copy of the run's
        files (render_run writes beside its inputs; the served folder stays untouched)."""
        entry = self.run(run_id)
        with _copies([entry]) as (copy,), _named(entry, copy):
            render_run(copy)
            return (copy / HTML_FILE).read_text(encoding="utf-8")

    def comparison_html(self, run_ids: Sequence[str]) -> str:
        """comparison.html of the runs, as `merkit report RUN1 RUN2 ...` writes it."""
        chosen = list(dict.fromkeys(run_ids))
        if len(chosen) < 2:
            raise MerkitError(f"a comparison needs at least two runs; {len(chosen)} chosen")
        entries = [self.run(run_id) for run_id in chosen]
        with _copies(entries) as copies:
            figures = [_figures(e, c) for e, c in zip(entries, copies, strict=True)]
        return to_html(comparison_document(figures))
