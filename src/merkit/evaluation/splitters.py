"""Cross-validation splitters as objects yielding (train_idx, test_idx), scikit-learn style.

Subject-independent protocols (LOSO, group k-fold, leave-one-dataset-out) are the default.
`SampleKFold` reproduces the sample-level 10-fold CV of the CABM-FMER paper; it lets one subject
appear in train and test, so it warns every time it is used.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import numpy as np

from merkit.data.sample import Sample
from merkit.errors import ConfigError

Fold = tuple[np.ndarray, np.ndarray]


class SubjectLeakageWarning(UserWarning):
    """A protocol puts samples of one subject in both the training and the test side."""


def _groups(samples: Sequence[Sample], key: str) -> np.ndarray:
    attr = "subject_key" if key == "subject" else "dataset"
    return np.asarray([getattr(s, attr) for s in samples])


def _leave_one_group_out(groups: np.ndarray) -> Iterator[Fold]:
    index = np.arange(len(groups))
    for name in dict.fromkeys(groups.tolist()):
        test = groups == name
        yield index[~test], index[test]


class Splitter(ABC):
    """A protocol. `subject_independent` is False only for protocols that leak subjects."""

    name: str = ""
    subject_independent: bool = True

    @abstractmethod
    def split(self, samples: Sequence[Sample]) -> Iterator[Fold]:
        """Yield (train_idx, test_idx) index arrays into `samples`."""

    def get_n_splits(self, samples: Sequence[Sample]) -> int:
        return sum(1 for _ in self.split(samples))

    def fold_names(self, samples: Sequence[Sample]) -> list[str]:
        """Stable fold names, used to save and resume finished folds."""
        return [f"fold{i:03d}" for i in range(self.get_n_splits(samples))]

    def describe(self) -> str:
        return self.name


class LeaveOneSubjectOut(Splitter):
    """One fold per subject (MEGC2019: 68 folds on the full composite)."""

    name = "loso"

    def split(self, samples: Sequence[Sample]) -> Iterator[Fold]:
        yield from _leave_one_group_out(_groups(samples, "subject"))

    def fold_names(self, samples: Sequence[Sample]) -> list[str]:
        names = dict.fromkeys(_groups(samples, "subject").tolist())
        return [n.replace("/", "_") for n in names]


class LeaveOneDatasetOut(Splitter):
    """One fold per source dataset: train on the others, test on the held-out corpus."""

    name = "lodo"

    def split(self, samples: Sequence[Sample]) -> Iterator[Fold]:
        yield from _leave_one_group_out(_groups(samples, "dataset"))

    def fold_names(self, samples: Sequence[Sample]) -> list[str]:
        return list(dict.fromkeys(_groups(samples, "dataset").tolist()))


class GroupKFold(Splitter):
    """k folds with every subject wholly on one side, class balance kept where possible."""

    name = "group-kfold"

    def __init__(self, n_splits: int = 10, seed: int = 0) -> None:
        self.n_splits = n_splits
        self.seed = seed

    def split(self, samples: Sequence[Sample]) -> Iterator[Fold]:
        groups = _groups(samples, "subject")
        n_groups = len(set(groups.tolist()))
        if n_groups < self.n_splits:
            raise ConfigError(
                f"group k-fold needs at least {self.n_splits} subjects, the data has {n_groups}"
            )
        from sklearn.model_selection import StratifiedGroupKFold  # slow import, used here only

        labels = np.asarray([s.label for s in samples])
        cv = StratifiedGroupKFold(n_splits=self.n_splits, shuffle=True, random_state=self.seed)
        yield from cv.split(np.zeros(len(samples)), labels, groups)

    def describe(self) -> str:
        return f"{self.name}(k={self.n_splits}, seed={self.seed})"

    def fold_names(self, samples: Sequence[Sample]) -> list[str]:
        return [f"fold{i:03d}" for i in range(self.n_splits)]


class SampleKFold(Splitter):
    """Stratified k-fold over samples (CABM-FMER's 10-fold CV). Subjects leak: it warns."""

    name = "kfold"
    subject_independent = False

    def __init__(self, n_splits: int = 10, seed: int = 0) -> None:
        self.n_splits = n_splits
        self.seed = seed

    def split(self, samples: Sequence[Sample]) -> Iterator[Fold]:
        warnings.warn(
            f"{self.describe()} splits samples, not subjects: the same subject appears in train "
            "and test, so its figures are inflated and not comparable with LOSO",
            SubjectLeakageWarning,
            stacklevel=2,
        )
        from sklearn.model_selection import StratifiedKFold  # slow import, used here only

        labels = np.asarray([s.label for s in samples])
        cv = StratifiedKFold(n_splits=self.n_splits, shuffle=True, random_state=self.seed)
        yield from cv.split(np.zeros(len(samples)), labels)

    def describe(self) -> str:
        return f"{self.name}(k={self.n_splits}, seed={self.seed})"

    def fold_names(self, samples: Sequence[Sample]) -> list[str]:
        return [f"fold{i:03d}" for i in range(self.n_splits)]


PROTOCOLS: dict[str, type[Splitter]] = {
    "loso": LeaveOneSubjectOut,
    "lodo": LeaveOneDatasetOut,
    "group-kfold": GroupKFold,
    "kfold": SampleKFold,
}


def make_splitter(name: str, **options: int) -> Splitter:
    """Build a protocol by name: loso, lodo, group-kfold or kfold (the last two take k, seed)."""
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    cls = PROTOCOLS[name]
    if cls in (LeaveOneSubjectOut, LeaveOneDatasetOut):
        return cls()
    return cls(**options)
