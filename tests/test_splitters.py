from __future__ import annotations

import numpy as np
import pytest

from merkit.data.sample import Sample
from merkit.errors import ConfigError
from merkit.evaluation.overlap import subject_overlap
from merkit.evaluation.splitters import (
    GroupKFold,
    LeaveOneDatasetOut,
    LeaveOneSubjectOut,
    SampleKFold,
    Splitter,
    SubjectLeakageWarning,
    make_splitter,
)


def make_samples() -> list[Sample]:
    samples = []
    for db, n_subjects in (("casme2", 6), ("samm", 5)):
        for s in range(n_subjects):
            for c in range(4):
                samples.append(Sample(db, f"s{s:02d}", f"c{c}", None, "x", label=(s + c) % 3))
    return samples


def covers_all_once(folds, n: int) -> bool:
    tested = np.concatenate([test for _, test in folds])
    return sorted(tested.tolist()) == list(range(n))


def test_loso_one_fold_per_subject_and_disjoint() -> None:
    samples = make_samples()
    folds = list(LeaveOneSubjectOut().split(samples))
    assert len(folds) == 11
    assert covers_all_once(folds, len(samples))
    for train, test in folds:
        assert len({samples[i].subject_key for i in test}) == 1
        assert not {samples[i].subject_key for i in train} & {samples[i].subject_key for i in test}
    names = LeaveOneSubjectOut().fold_names(samples)
    assert names[0] == "casme2_s00" and len(set(names)) == 11


def test_same_subject_name_in_two_datasets_are_different_subjects() -> None:
    samples = make_samples()  # "s00" exists in casme2 and samm
    folds = list(LeaveOneSubjectOut().split(samples))
    assert all(len(test) == 4 for _, test in folds)


def test_group_kfold_keeps_subjects_whole() -> None:
    samples = make_samples()
    folds = list(GroupKFold(n_splits=4, seed=1).split(samples))
    assert len(folds) == 4 and covers_all_once(folds, len(samples))
    assert subject_overlap(samples, GroupKFold(n_splits=4, seed=1)).clean


def test_group_kfold_needs_enough_subjects() -> None:
    with pytest.raises(ConfigError, match="at least 20 subjects"):
        list(GroupKFold(n_splits=20).split(make_samples()))


def test_leave_one_dataset_out() -> None:
    samples = make_samples()
    folds = list(LeaveOneDatasetOut().split(samples))
    assert [len(t) for _, t in folds] == [24, 20]
    assert LeaveOneDatasetOut().fold_names(samples) == ["casme2", "samm"]


def test_sample_kfold_warns_and_audit_reports_overlap() -> None:
    samples = make_samples()
    with pytest.warns(SubjectLeakageWarning, match="same subject appears in train and test"):
        folds = list(SampleKFold(n_splits=4).split(samples))
    assert covers_all_once(folds, len(samples))
    report = subject_overlap(samples, SampleKFold(n_splits=4))
    assert not report.subject_independent
    assert not report.clean
    assert len(report.leaking_folds) == 4
    assert "put 11 subjects in both train and test" in report.summary()


class FixedSplitter(Splitter):
    """Hands out given folds, so the audit can be checked against known overlaps."""

    name = "fixed"

    def __init__(self, folds: list[tuple[list[int], list[int]]]) -> None:
        self.folds = folds

    def split(self, samples):
        for train, test in self.folds:
            yield np.asarray(train), np.asarray(test)


def test_audit_flags_duplicate_sample_ids() -> None:
    samples = make_samples()[:8]  # casme2 s00 (0-3) and s01 (4-7)
    samples.append(samples[0])  # the same clip listed twice, index 8
    report = subject_overlap(samples, FixedSplitter([([0, 1, 2, 3], [4, 5, 6, 7, 8])]))
    (fold,) = report.folds
    assert fold.shared_samples == (samples[0].uid,)
    assert fold.shared_subjects == ("casme2/s00",)
    assert fold.test_subjects == ("casme2/s01", "casme2/s00")
    assert LeaveOneSubjectOut().get_n_splits(samples) == 2
    assert subject_overlap(samples, LeaveOneSubjectOut()).clean  # both copies held out together


def test_make_splitter() -> None:
    assert isinstance(make_splitter("loso"), LeaveOneSubjectOut)
    assert make_splitter("kfold", n_splits=10).n_splits == 10
    with pytest.raises(ConfigError, match="unknown protocol"):
        make_splitter("holdout")
