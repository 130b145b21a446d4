"""Subject overlap: which subjects (and samples) a protocol puts on both sides of a fold.

Every run records it (a subject-independent protocol has none); the leakage audit experiment
(`merkit.training.leakage_audit`) measures what such an overlap does to the figures.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from merkit.data.sample import Sample
from merkit.evaluation.splitters import Splitter, SubjectLeakageWarning


@dataclass(frozen=True)
class FoldOverlap:
    fold: str
    n_train: int
    n_test: int
    test_subjects: tuple[str, ...]
    shared_subjects: tuple[str, ...]  # subjects with samples in both train and test
    shared_samples: tuple[str, ...]  # sample ids present on both sides (duplicates)


@dataclass(frozen=True)
class OverlapReport:
    protocol: str
    subject_independent: bool
    folds: tuple[FoldOverlap, ...]

    @property
    def leaking_folds(self) -> list[FoldOverlap]:
        return [f for f in self.folds if f.shared_subjects or f.shared_samples]

    @property
    def clean(self) -> bool:
        return not self.leaking_folds

    def summary(self) -> str:
        if self.clean:
            return f"{self.protocol}: {len(self.folds)} folds, no subject on both sides"
        n_subjects = len({s for f in self.leaking_folds for s in f.shared_subjects})
        return (
            f"{self.protocol}: {len(self.leaking_folds)} of {len(self.folds)} folds put "
            f"{n_subjects} subjects in both train and test"
        )


def subject_overlap(samples: Sequence[Sample], splitter: Splitter) -> OverlapReport:
    """Check every fold of `splitter` on `samples` (the protocol's own warning is absorbed)."""
    folds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubjectLeakageWarning)
        splits = list(splitter.split(samples))
    for name, (train_idx, test_idx) in zip(splitter.fold_names(samples), splits, strict=True):
        train_subjects = {samples[i].subject_key for i in train_idx}
        test_subjects = list(dict.fromkeys(samples[i].subject_key for i in test_idx))
        train_uids = {samples[i].uid for i in train_idx}
        folds.append(
            FoldOverlap(
                fold=name,
                n_train=len(train_idx),
                n_test=len(test_idx),
                test_subjects=tuple(test_subjects),
                shared_subjects=tuple(s for s in test_subjects if s in train_subjects),
                shared_samples=tuple(
                    dict.fromkeys(samples[i].uid for i in test_idx if samples[i].uid in train_uids)
                ),
            )
        )
    return OverlapReport(splitter.describe(), splitter.subject_independent, tuple(folds))
