from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from merkit.evaluation.metrics import (
    classification_metrics,
    confusion_matrix,
    pooled_metrics,
    uar,
    uf1,
)
from merkit.evaluation.predictions import read_megc_logfile

MEGC3 = ["negative", "positive", "surprise"]


def test_confusion_matrix_counts() -> None:
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_macro_scores_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 5, 300))
    m = classification_metrics(y_true, y_pred, list("abcde"))
    assert m["uf1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["uar"] == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    assert m["macro_precision"] == pytest.approx(precision_score(y_true, y_pred, average="macro"))


def test_absent_class_is_not_averaged() -> None:
    # Class 2 never occurs in the truth of this pool: UF1/UAR average the two present classes.
    assert uf1([0, 0, 1, 1], [0, 0, 1, 2], 3) == pytest.approx((1.0 + 2 / 3) / 2)
    assert uar([0, 0, 1, 1], [0, 0, 1, 2], 3) == pytest.approx(0.75)


def test_pooled_is_not_fold_average() -> None:
    # Two "folds" with perfect and poor results: pooled UF1 differs from the mean of fold UF1s.
    t1, p1 = [0, 1, 2], [0, 1, 2]
    t2, p2 = [0, 0, 0, 1], [1, 1, 0, 0]
    pooled = uf1(t1 + t2, p1 + p2, 3)
    averaged = (uf1(t1, p1, 3) + uf1(t2, p2, 3)) / 2
    assert pooled != pytest.approx(averaged)


@pytest.mark.shared_data
def test_ststnet_published_predictions(megc2019_root) -> None:
    table = read_megc_logfile(megc2019_root / "STSTNet_logfile.txt")
    assert len(table) == 442
    y_true, y_pred = table.encode(MEGC3)
    m = pooled_metrics(y_true, y_pred, MEGC3, table.dataset)
    overall = m["overall"]
    assert round(overall["uf1"], 4) == 0.7353
    assert round(overall["uar"], 4) == 0.7186
    assert round(overall["macro_precision"], 4) == 0.7605
    assert round(overall["accuracy"], 4) == 0.7692
    expected = {"smic": (0.6801, 0.6703), "casme2": (0.8382, 0.8190), "samm": (0.6588, 0.6415)}
    for db, (f1, recall) in expected.items():
        assert round(m["per_dataset"][db]["uf1"], 4) == f1
        assert round(m["per_dataset"][db]["uar"], 4) == recall


def test_weighted_recall_and_f1_weight_classes_by_support() -> None:
    from merkit.evaluation.metrics import accuracy, classification_metrics

    y_true = [0, 0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 0, 1, 1, 0, 2]
    # per class: recall 3/4, 1/2, 1; F1 6/8... computed by hand: F1_0 = 2*3/(4+4) = 0.75,
    # F1_1 = 2*1/(2+2) = 0.5, F1_2 = 1
    weighted = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert weighted["war"] == pytest.approx((4 * 0.75 + 2 * 0.5 + 1 * 1) / 7)
    assert weighted["war"] == pytest.approx(accuracy(y_true, y_pred))
    assert weighted["wf1"] == pytest.approx((4 * 0.75 + 2 * 0.5 + 1 * 1.0) / 7)
    m = classification_metrics([0, 0, 0, 1], [0, 0, 1, 1], ["a", "b"])
    # F1_a = 2*2/(3+2) = 0.8 (support 3), F1_b = 2*1/(1+2) = 2/3 (support 1)
    assert m["wf1"] == pytest.approx((3 * 0.8 + 1 * 2 / 3) / 4)
    assert m["uf1"] == pytest.approx((0.8 + 2 / 3) / 2)
