"""The papers' scoring practices, as pure functions, so the audit can put each beside LOSO.

Pooled LOSO (every fold's predictions scored once) is MEGC's protocol and merkit's. Published
figures were often scored otherwise, and each way changes the number:

- best epoch per test subject (HTNet, EMR; ICIP 2024 too): each fold keeps the epoch that is
  most accurate on its own test subject (the audit's `oracle`, pooled);
- metrics averaged per subject (ICIP 2024): UF1, UAR and accuracy computed on each subject's few
  samples, then averaged over subjects; a subject with one sample scores 0 or 1 -- `subject_mean`;
- ICIP 2024's full scoring: per subject the epoch of best UF1 (its UAR and precision at that
  epoch) and the best accuracy of any epoch, then averaged over subjects -- `subject_best`.

Per-subject figures use merkit's definitions (classes present in that subject's ground truth);
the authors' code differs in small ways (it counts absent classes as recall 0), noted in README.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from merkit.evaluation.metrics import accuracy, macro_precision, uar, uf1

KEYS = ("uf1", "uar", "accuracy", "macro_precision")


def _figures(y: np.ndarray, pred: np.ndarray, k: int) -> dict[str, float]:
    return {
        "uf1": uf1(y, pred, k),
        "uar": uar(y, pred, k),
        "accuracy": accuracy(y, pred),
        "macro_precision": macro_precision(y, pred, k),
    }


def _averaged(
    per_subject: dict[str, dict[str, float]], sizes: dict[str, int], datasets: dict[str, str]
) -> dict[str, Any]:
    """{"overall", "per_dataset"} means over subjects, in the audit's headline layout."""

    def mean(subjects: Sequence[str]) -> dict[str, Any]:
        return {
            "n": int(sum(sizes[s] for s in subjects)),
            "n_subjects": len(subjects),
            **{key: float(np.mean([per_subject[s][key] for s in subjects])) for key in KEYS},
        }

    subjects = list(per_subject)
    by_db: dict[str, list[str]] = {}
    for subject in subjects:
        by_db.setdefault(datasets[subject], []).append(subject)
    return {"overall": mean(subjects), "per_dataset": {db: mean(s) for db, s in by_db.items()}}


def _per_subject(
    curves: dict[str, np.ndarray],
    y_tests: dict[str, np.ndarray],
    datasets: dict[str, str],
    k: int,
    score: Callable[[np.ndarray, np.ndarray], dict[str, float]],
) -> dict[str, Any]:
    figures = {fold: score(curve, y_tests[fold]) for fold, curve in curves.items()}
    sizes = {fold: len(y) for fold, y in y_tests.items()}
    return _averaged(figures, sizes, datasets)


def subject_mean(
    curves: dict[str, np.ndarray], y_tests: dict[str, np.ndarray], datasets: dict[str, str], k: int
) -> dict[str, Any]:
    """Last epoch, figures per subject (one LOSO fold each) averaged over subjects."""
    return _per_subject(curves, y_tests, datasets, k, lambda c, y: _figures(y, c[-1].argmax(-1), k))


def subject_best(
    curves: dict[str, np.ndarray], y_tests: dict[str, np.ndarray], datasets: dict[str, str], k: int
) -> dict[str, Any]:
    """ICIP 2024: per subject the first epoch of best UF1 (UAR, precision there) and the best
    accuracy of any epoch, averaged over subjects."""

    def best(curve: np.ndarray, y: np.ndarray) -> dict[str, float]:
        epochs = [_figures(y, c.argmax(-1), k) for c in curve]
        top = max(range(len(epochs)), key=lambda e: (epochs[e]["uf1"], -e))
        return {**epochs[top], "accuracy": max(e["accuracy"] for e in epochs)}

    return _per_subject(curves, y_tests, datasets, k, best)
