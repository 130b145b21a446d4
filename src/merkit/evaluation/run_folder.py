"""A run folder: the one place that knows its file names, who may write into it, and its folds.

Layout:
    config.yaml            resolved config + data fingerprint, protocol, versions, git, times
    folds/seed{S}/*.csv    each fold's test predictions with class probabilities
    folds/seed{S}/*.curves.json  each fold's per-epoch training curves (written before its csv)
    curves.json            the curves averaged over folds and seeds (drawn by the report)
    predictions.csv        pooled predictions (multi-seed: probabilities averaged over seeds)
    predictions_seed{S}.csv  each seed's pooled predictions (multi-seed runs only)
    metrics.json, confusion.png, curves.png, report.md, report.html   derived by the report

A folder belongs to one config: `claim` refuses to run another config into it (or to write
into a folder that is not a run folder) unless asked to overwrite, and clears only the files a
run writes. A fold is finished when its predictions file holds exactly its samples, so a run
cut short anywhere resumes from the folds on disk.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from merkit.errors import AnnotationError, ConfigError
from merkit.evaluation.predictions import (
    Key,
    Predictions,
    matching_probabilities,
    read_predictions,
    write_predictions,
)
from merkit.evaluation.run_meta import RunMeta
from merkit.io import differences, read_yaml, write_json_atomic, write_yaml_atomic

RUN_FILE = "config.yaml"
PREDICTIONS_FILE = "predictions.csv"
SEED_FILE = "predictions_seed{seed}.csv"
METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion.png"
REPORT_FILE = "report.md"
HTML_FILE = "report.html"
CURVES_JSON = "curves.json"
CURVES_CSV = "curves.csv"
CURVES_PNG = "curves.png"
FOLDS_DIR = "folds"
# What a run writes besides its folds (and seed files): removed when a run is replaced.
OUTPUT_FILES = (
    METRICS_FILE,
    CONFUSION_FILE,
    REPORT_FILE,
    HTML_FILE,
    PREDICTIONS_FILE,
    RUN_FILE,
    CURVES_JSON,
    CURVES_PNG,
)
_SEED_RE = re.compile(r"predictions_seed(-?\d+)\.csv$")


def claim_folder(
    folder: Path,
    marker: str,
    kind: str,
    changed: Callable[[], list[str]],
    clear: Callable[[], None],
    *,
    resume: bool = True,
    overwrite: bool = False,
) -> bool:
    """Make `folder` ready for a `kind` ("run", "audit"); True when it holds earlier work of the
    same settings (its `marker` file names them) to resume.

    Earlier work of other settings (`changed()` names what differs) or a folder that holds other
    files is refused with one sentence, unless `overwrite`; replaced work is `clear`ed first.
    """
    if (folder / marker).is_file():
        if overwrite or not resume:
            clear()
            return False
        diffs = changed()
        if diffs:
            raise ConfigError(
                f"{folder} holds {'an' if kind[0] in 'aeiou' else 'a'} {kind} with a different "
                f"config ({', '.join(diffs[:5])} differ); pass --overwrite to replace it, or "
                "choose another output folder"
            )
        return True
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise ConfigError(
            f"{folder} exists and is not a merkit {kind} folder; choose another output folder "
            "or pass --overwrite to write into it"
        )
    return False


class RunFolder:
    """The files of one run folder (`path`), read and written only through here."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ---- metadata ----------------------------------------------------------------------------

    def read_meta(self) -> RunMeta:
        """The run's `config.yaml`; ConfigError when the folder is not a run folder."""
        path = self.path / RUN_FILE
        if not path.is_file():
            raise ConfigError(
                f"{self.path}: not a run folder (no {RUN_FILE}; run `merkit train` first)"
            )
        return RunMeta.from_dict(read_yaml(path), where=str(path))

    def write_meta(self, meta: RunMeta) -> None:
        write_yaml_atomic(self.path / RUN_FILE, meta.to_dict())

    def claim(
        self,
        identity: dict[str, Any],
        fingerprint: str,
        recorded_identity: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        resume: bool,
        overwrite: bool,
    ) -> RunMeta | None:
        """Check this folder can take a run of `identity` on data of `fingerprint`; the earlier
        run's metadata when resuming it. `recorded_identity` turns a recorded config into its
        identity as the current merkit reads it (ConfigError if it cannot)."""
        previous: list[RunMeta] = []

        def changed() -> list[str]:
            meta = self.read_meta()
            previous.append(meta)
            try:
                recorded = recorded_identity(meta.config)
            except ConfigError as exc:
                raise ConfigError(
                    f"{self.path / RUN_FILE} holds a config this merkit cannot read ({exc}); "
                    "pass --overwrite to replace the run, or choose another output folder"
                ) from None
            diffs = differences(recorded, identity)
            if meta.data.fingerprint != fingerprint:
                diffs.append("data (fingerprint of the samples)")
            return diffs

        resumed = claim_folder(
            self.path, RUN_FILE, "run", changed, self.clear, resume=resume, overwrite=overwrite
        )
        return previous[0] if resumed else None

    def clear(self) -> None:
        """Remove what a run wrote (and nothing else the folder may hold)."""
        shutil.rmtree(self.path / FOLDS_DIR, ignore_errors=True)
        for name in OUTPUT_FILES:
            (self.path / name).unlink(missing_ok=True)
        for path in self.seed_files().values():
            path.unlink()

    # ---- folds -------------------------------------------------------------------------------

    def fold_file(self, seed: int, fold: str) -> Path:
        return self.path / FOLDS_DIR / f"seed{seed}" / f"{fold}.csv"

    def save_fold(
        self, seed: int, fold: str, table: Predictions, history: dict[str, list[float]]
    ) -> None:
        """A finished fold's curves, then its predictions (their presence marks the fold done)."""
        path = self.fold_file(seed, fold)
        curves = path.with_suffix(".curves.json")
        if history:
            write_json_atomic(curves, history)
        else:  # an engine without history: no stale curves of an earlier attempt at this fold
            curves.unlink(missing_ok=True)
        write_predictions(path, table)

    def load_fold(
        self, seed: int, fold: str, keys: Sequence[Key], class_names: Sequence[str]
    ) -> tuple[np.ndarray, dict[str, list[float]]] | None:
        """A finished fold's probabilities and curves; None when it is still to run."""
        path = self.fold_file(seed, fold)
        probs = matching_probabilities(path, keys, class_names)
        if probs is None:
            return None
        try:  # curves that do not parse are left out, the fold's predictions stand
            data = json.loads(path.with_suffix(".curves.json").read_text(encoding="utf-8"))
            history = {str(k): [float(v) for v in values] for k, values in data.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            history = {}
        return probs, history

    # ---- pooled results ----------------------------------------------------------------------

    def seed_files(self) -> dict[int, Path]:
        """`predictions_seed{S}.csv` files of a multi-seed run, by seed."""
        found = {}
        for path in self.path.glob("predictions_seed*.csv"):
            match = _SEED_RE.search(path.name)
            if match:
                found[int(match.group(1))] = path
        return dict(sorted(found.items()))

    def write_predictions(self, pooled: Predictions, per_seed: dict[int, Predictions]) -> None:
        """predictions.csv and, for several seeds, one file per seed."""
        if len(per_seed) > 1:
            for seed, table in per_seed.items():
                write_predictions(self.path / SEED_FILE.format(seed=seed), table)
        write_predictions(self.path / PREDICTIONS_FILE, pooled)

    def read_predictions(self) -> tuple[Predictions, dict[int, Predictions]]:
        """The pooled predictions and each seed's; ConfigError when the run has not finished."""
        if not (self.path / PREDICTIONS_FILE).is_file():
            raise ConfigError(
                f"{self.path}: the run has not finished (no {PREDICTIONS_FILE}); rerun the same "
                "`merkit train` command to resume it"
            )
        seeds = {s: read_predictions(p) for s, p in self.seed_files().items()}
        return read_predictions(self.path / PREDICTIONS_FILE), seeds

    def write_curves(self, curves: dict[str, list[float]]) -> None:
        if curves:
            write_json_atomic(self.path / CURVES_JSON, curves)
        else:  # an engine without history: no stale curves from an earlier run of this folder
            (self.path / CURVES_JSON).unlink(missing_ok=True)

    def read_curves(self) -> dict[str, list[float]] | None:
        """Per-epoch series (`curves.json` or `curves.csv`), None when the run has none.

        `curves.json`: {"series_name": [value per epoch], ...}. `curves.csv`: a header row
        `epoch,series_name,...` then one row per epoch. Empty cells are missing values (NaN).
        """
        if (self.path / CURVES_JSON).is_file():
            path = self.path / CURVES_JSON
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
                raise AnnotationError(
                    f"{path}: expected a mapping of series name to per-epoch values"
                )
            series = data
        elif (self.path / CURVES_CSV).is_file():
            path = self.path / CURVES_CSV
            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
            names = [c for c in (rows[0].keys() if rows else []) if c != "epoch"]
            series = {name: [row[name] for row in rows] for name in names}
        else:
            return None
        try:
            return {
                str(k): [float("nan") if v in ("", None) else float(v) for v in values]
                for k, values in series.items()
            }
        except (TypeError, ValueError):
            raise AnnotationError(f"{path}: a curve value is not a number") from None
