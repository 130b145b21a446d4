"""The papers' scoring practices, checked on hand-made epochs of two subjects."""

from __future__ import annotations

import numpy as np
import pytest

from merkit.evaluation.practices import (
    PRACTICES,
    FoldCurves,
    Practice,
    oracle_epoch,
    register_practice,
)


def onehot(classes: list[int], k: int = 3) -> np.ndarray:
    return np.eye(k)[classes]


# subject A (casme2): labels 0, 1; epoch 1 predicts 0, 0 ; epoch 2 predicts 0, 1 (perfect)
# subject B (samm): labels 2, 2, 0; epoch 1 predicts 2, 2, 0 (perfect); epoch 2 predicts 2, 0, 0
CURVES = {
    "A": np.stack([onehot([0, 0]), onehot([0, 1])]),
    "B": np.stack([onehot([2, 2, 0]), onehot([2, 0, 0])]),
}
LABELS = {"A": np.array([0, 1]), "B": np.array([2, 2, 0])}
DATASETS = {"A": "casme2", "B": "samm"}
FOLDS = FoldCurves(CURVES, LABELS, DATASETS, 3)


def test_subject_mean_averages_last_epoch_figures_over_subjects() -> None:
    result = PRACTICES["subject-mean"].averaged(FOLDS)
    # A last epoch: perfect (1.0). B last epoch: class 2 recall 1/2, class 0 recall 1 -> UAR 0.75;
    # F1: class 2 = 2*1/(2+1) = 2/3, class 0 = 2*1/(1+2) = 2/3 -> UF1 2/3; accuracy 2/3
    assert result["overall"]["uar"] == pytest.approx((1.0 + 0.75) / 2)
    assert result["overall"]["uf1"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert result["overall"]["accuracy"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert result["overall"]["n"] == 5 and result["overall"]["n_subjects"] == 2
    assert result["per_dataset"]["samm"]["uf1"] == pytest.approx(2 / 3)


def test_subject_best_takes_each_subjects_best_epoch() -> None:
    result = PRACTICES["subject-best"].averaged(FOLDS)
    # each subject has one perfect epoch (A: the 2nd, B: the 1st)
    assert result["overall"]["uf1"] == pytest.approx(1.0)
    assert result["overall"]["accuracy"] == pytest.approx(1.0)
    honest = PRACTICES["subject-mean"].averaged(FOLDS)
    assert result["overall"]["uf1"] > honest["overall"]["uf1"]


def test_pooled_practices_choose_an_epoch_per_fold() -> None:
    assert PRACTICES["loso"].chosen_epochs(FOLDS) == {"A": 1, "B": 1}
    assert PRACTICES["oracle"].chosen_epochs(FOLDS) == {"A": 1, "B": 0}  # best on the test


def test_oracle_epoch_picks_best_test_accuracy_later_on_ties() -> None:
    y = np.array([0, 1, 1])
    curve = np.stack(
        [
            onehot([0, 0, 0], 2),  # 1/3 correct
            onehot([0, 1, 1], 2),  # all correct
            onehot([0, 1, 0], 2),  # 2/3
            onehot([0, 1, 1], 2),  # all correct again: HTNet's `<=` keeps this one
            onehot([1, 1, 1], 2),  # 2/3
        ]
    )
    assert oracle_epoch(curve, y) == 3
    assert oracle_epoch(curve[:3], y) == 1


def test_the_audit_rows_are_the_registry() -> None:
    assert list(PRACTICES) == ["loso", "oracle", "subject-mean", "subject-best"]
    assert [p.leaking for p in PRACTICES.values()] == [False, True, False, True]
    assert [p.pooled for p in PRACTICES.values()] == [True, True, False, False]
    with pytest.raises(ValueError, match="'loso' is already registered"):
        register_practice(PRACTICES["loso"])
    with pytest.raises(ValueError, match="exactly one of epoch, subject_figures"):
        Practice("vague", "neither", leaking=False)
