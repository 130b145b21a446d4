"""Prediction tables on disk: `dataset,subject,sample,true,predicted` (+ optional probabilities).

The same CSV is written by every run and read by `merkit score`, so figures can be recomputed
from any run, or from another code base's output converted to this format.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from merkit.errors import AnnotationError
from merkit.io import write_atomic

COLUMNS = ("dataset", "subject", "sample", "true", "predicted")


@dataclass
class Predictions:
    """Pooled predictions; `true`/`predicted` are class indices or class names."""

    dataset: list[str]
    subject: list[str]
    sample: list[str]
    true: list[str]
    predicted: list[str]

    def __len__(self) -> int:
        return len(self.sample)

    def class_names(self, given: Sequence[str] | None = None) -> list[str]:
        """Class names: `given`, else 0..K-1 for integer labels, else sorted distinct names."""
        if given:
            return list(given)
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
    """Read a predictions CSV with a header holding at least COLUMNS."""
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
    return Predictions(*([row[c].strip() for row in rows] for c in COLUMNS))


def write_predictions(
    path: str | Path,
    predictions: Predictions,
    probabilities: np.ndarray | None = None,
    class_names: Sequence[str] = (),
) -> None:
    """Write atomically; with `probabilities`, add one `p_{class}` column per class."""
    extra = [f"p_{c}" for c in class_names] if probabilities is not None else []

    def write(handle: IO[str]) -> None:
        writer = csv.writer(handle)
        writer.writerow([*COLUMNS, *extra])
        columns = [getattr(predictions, c) for c in COLUMNS]
        for i, row in enumerate(zip(*columns, strict=True)):
            probs = [f"{p:.6f}" for p in probabilities[i]] if probabilities is not None else []
            writer.writerow([*row, *probs])

    write_atomic(path, write)


def read_megc_logfile(path: str | Path) -> Predictions:
    """Convert the MEGC2019 log format (`db subject` lines, then `file true pred`) to a table."""
    path = Path(path)
    rows: list[tuple[str, str, str, str, str]] = []
    db = subject = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 2:
            db, subject = parts
        elif len(parts) == 3 and db is not None:
            rows.append((db, subject, parts[0], parts[1], parts[2]))
        else:
            raise AnnotationError(
                f"{path}: line {number} is neither 'db subject' nor 'file true predicted'"
            )
    if not rows:
        raise AnnotationError(f"{path}: no predictions found")
    return Predictions(*(list(col) for col in zip(*rows, strict=True)))
