"""Prediction tables on disk: `dataset,subject,sample,true,predicted` (+ optional probabilities).

The same CSV is written by every run and read by `merkit score`, so figures can be recomputed
from any run, or from another code base's output converted to this format.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from merkit.errors import AnnotationError, ConfigError, MerkitError
from merkit.io import write_atomic

COLUMNS = ("dataset", "subject", "sample", "true", "predicted")
PROBABILITY_PREFIX = "p_"  # one `p_{class}` column per class, when probabilities are kept

Key = tuple[str, str, str]  # (dataset, subject, sample): which sample a row is about


@dataclass
class Predictions:
    """Pooled predictions; `true`/`predicted` are class indices or class names.

    `probabilities` (N, K), when known, holds one row per prediction and one column per class
    of `probability_classes`, so the table and its probabilities travel (and are read) together.
    """

    dataset: list[str]
    subject: list[str]
    sample: list[str]
    true: list[str]
    predicted: list[str]
    probabilities: np.ndarray | None = field(default=None, compare=False)  # floats: see allclose
    probability_classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.sample)

    @classmethod
    def from_probabilities(
        cls,
        keys: Sequence[Key],
        true: Sequence[str],
        probabilities: np.ndarray,
        class_names: Sequence[str],
    ) -> Predictions:
        """A table predicting the most probable class of each row (`keys` say which sample)."""
        predicted = [class_names[int(p)] for p in probabilities.argmax(axis=1)]
        dataset, subject, sample = (list(column) for column in zip(*keys, strict=True))
        return cls(
            dataset, subject, sample, list(true), predicted, probabilities, tuple(class_names)
        )

    def keys(self) -> list[Key]:
        return list(zip(self.dataset, self.subject, self.sample, strict=True))

    def probabilities_for(self, class_names: Sequence[str]) -> np.ndarray | None:
        """(N, len(class_names)) probabilities in `class_names` order; None when some class has
        no column (or the table keeps no probabilities)."""
        if self.probabilities is None or not set(class_names) <= set(self.probability_classes):
            return None
        order = [self.probability_classes.index(c) for c in class_names]
        return self.probabilities[:, order]

    def class_names(self, given: Sequence[str] | None = None) -> list[str]:
        """Class names: `given`, else 0..K-1 for integer labels, else sorted distinct names."""
        if given:
            names = [name.strip() for name in given]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated or not all(names):
                what = f"repeats {', '.join(repeated)}" if repeated else "has an empty name"
                raise ConfigError(f"class names {','.join(given)}: the list {what}")
            return names
        values = set(self.true) | set(self.predicted)
        if all(v.lstrip("-").isdigit() for v in values):
            return [str(i) for i in range(max(int(v) for v in values) + 1)]
        return sorted(values)

    def encode(self, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Integer (y_true, y_pred) for `class_names`; accepts names or indices in the table."""
        lookup = {name: i for i, name in enumerate(class_names)}
        lookup.update({str(i): i for i in range(len(class_names))})

        def code(value: str, row: int, column: str) -> int:
            if value not in lookup:
                raise AnnotationError(
                    f"row {row + 2}: {column} {value!r} is not a class "
                    f"(classes: {', '.join(class_names)})"
                )
            return lookup[value]

        t = [code(v, i, "true") for i, v in enumerate(self.true)]
        p = [code(v, i, "predicted") for i, v in enumerate(self.predicted)]
        return np.asarray(t, dtype=np.int64), np.asarray(p, dtype=np.int64)


def read_predictions(path: str | Path) -> Predictions:
    """Read a predictions CSV with a header holding at least COLUMNS (and any `p_` columns)."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: predictions file not found")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise AnnotationError(
                    f"{path}: missing column(s) {', '.join(missing)} "
                    f"(expected a header with {', '.join(COLUMNS)})"
                )
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not a UTF-8 text CSV ({exc.reason})") from None
    if not rows:
        raise AnnotationError(f"{path}: no prediction rows")
    for i, row in enumerate(rows):
        empty = [c for c in COLUMNS if not (row.get(c) or "").strip()]
        if empty:
            raise AnnotationError(f"{path}: row {i + 2} has an empty {empty[0]!r}")
    columns = [c for c in header if c.startswith(PROBABILITY_PREFIX)]
    table = Predictions(*([row[c].strip() for row in rows] for c in COLUMNS))
    _refuse_repeats(path, table.keys(), [f"row {i + 2}" for i in range(len(rows))])
    if columns:
        table.probabilities = _probabilities(path, rows, columns)
        table.probability_classes = tuple(c.removeprefix(PROBABILITY_PREFIX) for c in columns)
    return table


def _probabilities(path: Path, rows: list[dict[str, str]], columns: list[str]) -> np.ndarray:
    try:
        return np.asarray([[float(row[c]) for c in columns] for row in rows], np.float64)
    except (TypeError, ValueError):
        raise AnnotationError(f"{path}: a p_ probability cell is not a number") from None


def matching_probabilities(
    path: Path, keys: Sequence[Key], class_names: Sequence[str]
) -> np.ndarray | None:
    """What a saved predictions file holds for exactly the samples `keys`, or None: missing, cut
    short by a crash (it does not parse), or about other samples or classes (work to redo)."""
    if not path.is_file():
        return None
    try:
        table = read_predictions(path)
    except (MerkitError, csv.Error):
        return None
    probs = table.probabilities_for(class_names) if table.keys() == list(keys) else None
    return probs if probs is not None and probs.shape == (len(keys), len(class_names)) else None


def write_predictions(path: str | Path, predictions: Predictions) -> None:
    """Write atomically; with probabilities, one `p_{class}` column per class."""
    probs = predictions.probabilities
    classes = predictions.probability_classes if probs is not None else ()
    extra = [f"{PROBABILITY_PREFIX}{c}" for c in classes]

    def write(handle: IO[str]) -> None:
        writer = csv.writer(handle)
        writer.writerow([*COLUMNS, *extra])
        columns = [getattr(predictions, c) for c in COLUMNS]
        for i, row in enumerate(zip(*columns, strict=True)):
            cells = [f"{p:.6f}" for p in probs[i]] if probs is not None else []
            writer.writerow([*row, *cells])

    write_atomic(path, write)


def _refuse_repeats(path: Path, keys: Sequence[Key], where: Sequence[str]) -> None:
    """A sample listed twice would be counted twice: one sentence naming both places."""
    first: dict[Key, str] = {}
    for key, place in zip(keys, where, strict=True):
        if key in first:
            raise AnnotationError(
                f"{path}: {place} repeats sample {'/'.join(key)} (first at {first[key]}); "
                "each sample must be listed once"
            )
        first[key] = place


def read_megc_logfile(path: str | Path) -> Predictions:
    """Convert the MEGC2019 log format (`db subject` lines, then `file true pred`) to a table."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a log file" if path.is_dir() else "log file not found"
        raise AnnotationError(f"{path}: {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not a UTF-8 text log ({exc.reason})") from None
    rows: list[tuple[str, str, str, str, str]] = []
    lines: list[str] = []
    db = subject = None
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 2:
            db, subject = parts
        elif len(parts) == 3 and db is not None:
            rows.append((db, subject, parts[0], parts[1], parts[2]))
            lines.append(f"line {number}")
        else:
            raise AnnotationError(
                f"{path}: line {number} is neither 'db subject' nor 'file true predicted'"
            )
    if not rows:
        raise AnnotationError(f"{path}: no predictions found")
    table = Predictions(*(list(col) for col in zip(*rows, strict=True)))
    _refuse_repeats(path, table.keys(), lines)
    return table
