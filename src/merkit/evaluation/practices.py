"""The papers' scoring practices, one registered `Practice` each, so the audit can put each
beside LOSO by iterating over `PRACTICES`.

Pooled LOSO (every fold's predictions scored once) is MEGC's protocol and merkit's. Published
figures were often scored otherwise, and each way changes the number. A practice turns the LOSO
folds' per-epoch test probabilities (`FoldCurves`) into figures one of two ways:

- pooled: it picks one epoch per fold, and those epochs' predictions are pooled and scored once
  (`loso`: the last epoch; `oracle`: the epoch most accurate on the fold's own test subject, the
  later one on ties, as HTNet's `if best <= acc` keeps it, `main_HTNet.py:293-301`);
- averaged over subjects: it scores each subject's few samples and averages the figures over
  subjects, as ICIP 2024 does (`subject-mean`: last epoch; `subject-best`: ICIP 2024's full
  scoring, per subject the first epoch of best UF1 with its UAR and precision, and the best
  accuracy of any epoch, `ME_model.py:253-277`). A subject with one sample scores 0 or 1.

Per-subject figures use merkit's definitions (`merkit.evaluation.metrics`: UF1 and UAR over the
classes present in that subject's ground truth). ICIP 2024's callback (`ME_model.py:22-63`)
differs: its confusion matrix spans classes 0 to the largest index among the subject's labels
and predictions, a class in that span with no true sample counts as recall 0 and F1 0 (pulling
the subject's means down), an accuracy of 1 sets UF1 and UAR to 1, and a subject's training stops
at its first epoch of UF1 1; merkit's curves always run the whole schedule.

A new practice is one `register_practice(Practice(...))` call here; the audit's rows, labels
and inflation follow from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from merkit.evaluation.metrics import accuracy, macro_precision, uar, uf1

KEYS = ("uf1", "uar", "accuracy", "macro_precision")

# (curve (epochs, n_test, K), test labels) -> the 0-based epoch a fold keeps
EpochChoice = Callable[[np.ndarray, np.ndarray], int]
# (curve, test labels, K) -> one subject's figures (KEYS)
SubjectFigures = Callable[[np.ndarray, np.ndarray, int], dict[str, float]]


@dataclass(frozen=True)
class FoldCurves:
    """The LOSO folds (one test subject each): per fold its (epochs, n_test, K) test
    probabilities, its test labels and its subject's source dataset."""

    curves: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    datasets: dict[str, str]
    num_classes: int


@dataclass(frozen=True)
class Practice:
    """One way the field scored a model: exactly one of `epoch` (pooled) and `subject_figures`
    (averaged over subjects). `leaking`: the held-out subject influences its own figure."""

    name: str
    label: str  # the audit's description of the row, naming the papers that score this way
    leaking: bool
    epoch: EpochChoice | None = None
    subject_figures: SubjectFigures | None = None

    def __post_init__(self) -> None:
        if (self.epoch is None) == (self.subject_figures is None):
            raise ValueError(f"practice {self.name!r}: give exactly one of epoch, subject_figures")

    @property
    def pooled(self) -> bool:
        """Whether the figures come from pooled predictions (else: averaged over subjects)."""
        return self.epoch is not None

    def chosen_epochs(self, folds: FoldCurves) -> dict[str, int]:
        """A pooled practice's 0-based epoch per fold."""
        if self.epoch is None:
            raise TypeError(f"practice {self.name!r} averages over subjects: it chooses no epochs")
        return {fold: self.epoch(curve, folds.labels[fold]) for fold, curve in folds.curves.items()}

    def averaged(self, folds: FoldCurves) -> dict[str, Any]:
        """An averaging practice's {"overall", "per_dataset"} means over subjects."""
        if self.subject_figures is None:
            raise TypeError(f"practice {self.name!r} is pooled: score its pooled predictions")
        k = folds.num_classes
        figures = {
            fold: self.subject_figures(curve, folds.labels[fold], k)
            for fold, curve in folds.curves.items()
        }
        sizes = {fold: len(y) for fold, y in folds.labels.items()}
        return _averaged(figures, sizes, folds.datasets)


PRACTICES: dict[str, Practice] = {}


def register_practice(practice: Practice) -> Practice:
    """Add `practice` to the audit (its rows follow registration order); a name is taken once."""
    if practice.name in PRACTICES:
        raise ValueError(f"practice {practice.name!r} is already registered")
    PRACTICES[practice.name] = practice
    return practice


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


def last_epoch(curve: np.ndarray, y_test: np.ndarray) -> int:
    """The fixed schedule's choice: the last epoch."""
    return len(curve) - 1


def oracle_epoch(curve: np.ndarray, y_test: np.ndarray) -> int:
    """The epoch whose test accuracy is highest, the later one on ties (HTNet's `<=`): the
    peeking choice."""
    correct = (curve.argmax(axis=-1) == y_test[None, :]).mean(axis=1)
    return len(correct) - 1 - int(np.argmax(correct[::-1]))


def last_epoch_figures(curve: np.ndarray, y_test: np.ndarray, k: int) -> dict[str, float]:
    """One subject's figures at the last epoch."""
    return _figures(y_test, curve[-1].argmax(-1), k)


def best_epoch_figures(curve: np.ndarray, y_test: np.ndarray, k: int) -> dict[str, float]:
    """ICIP 2024's per-subject figures: the first epoch of best UF1 (its UAR and precision) and
    the best accuracy of any epoch."""
    epochs = [_figures(y_test, c.argmax(-1), k) for c in curve]
    top = max(range(len(epochs)), key=lambda e: (epochs[e]["uf1"], -e))
    return {**epochs[top], "accuracy": max(e["accuracy"] for e in epochs)}


register_practice(
    Practice("loso", "LOSO, fixed schedule, last epoch, pooled (honest)", False, last_epoch)
)
register_practice(
    Practice(
        "oracle",
        "LOSO, best epoch chosen on each test subject, pooled (LEAKS: HTNet's, EMR's)",
        True,
        oracle_epoch,
    )
)
register_practice(
    Practice(
        "subject-mean",
        "LOSO, last epoch, figures averaged over subjects (ICIP 2024's averaging)",
        False,
        subject_figures=last_epoch_figures,
    )
)
register_practice(
    Practice(
        "subject-best",
        "LOSO, each subject's best epoch, figures averaged over subjects "
        "(LEAKS: ICIP 2024's scoring)",
        True,
        subject_figures=best_epoch_figures,
    )
)
