"""Metrics as pure functions of (y_true, y_pred), computed once on pooled predictions.

The MEGC convention: UF1 is the mean over classes of per-class F1 (2TP / (2TP + FP + FN)) and
UAR the mean over classes of per-class recall, over the classes present in the ground truth.
F1 is never averaged over folds. WAR and WF1 (which MOL reports) weight the per-class recall
and F1 by class support instead; WAR is therefore the accuracy, written out under its name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_labels(y: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(y, dtype=np.int64).ravel()
    if arr.size and arr.min() < 0:
        raise ValueError("labels must be non-negative class indices")
    return arr


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """Counts C[i, j] of samples of true class i predicted as class j."""
    t, p = _as_labels(y_true), _as_labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = support + predicted
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def _present(cm: np.ndarray) -> np.ndarray:
    return cm.sum(axis=1) > 0


def uf1(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int | None = None) -> float:
    """Unweighted F1: mean per-class F1 over the classes present in y_true."""
    cm = confusion_matrix(y_true, y_pred, num_classes or _n_classes(y_true, y_pred))
    return float(per_class_scores(cm)["f1"][_present(cm)].mean())


def uar(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int | None = None) -> float:
    """Unweighted average recall: mean per-class recall over the classes present in y_true."""
    cm = confusion_matrix(y_true, y_pred, num_classes or _n_classes(y_true, y_pred))
    return float(per_class_scores(cm)["recall"][_present(cm)].mean())


def _weighted(cm: np.ndarray, key: str) -> float:
    scores = per_class_scores(cm)
    total = scores["support"].sum()
    return float((scores[key] * scores["support"]).sum() / total) if total else 0.0


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    t, p = _as_labels(y_true), _as_labels(y_pred)
    return float((t == p).mean()) if t.size else 0.0


def macro_precision(
    y_true: Sequence[int], y_pred: Sequence[int], num_classes: int | None = None
) -> float:
    """Mean per-class precision over the classes present in y_true."""
    cm = confusion_matrix(y_true, y_pred, num_classes or _n_classes(y_true, y_pred))
    return float(per_class_scores(cm)["precision"][_present(cm)].mean())


def _n_classes(y_true: Sequence[int], y_pred: Sequence[int]) -> int:
    both = np.concatenate([_as_labels(y_true), _as_labels(y_pred)])
    return int(both.max()) + 1 if both.size else 1


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]
) -> dict:
    """All figures of one pool of predictions, as a JSON-ready dict."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    scores = per_class_scores(cm)
    present = _present(cm)
    mean = (lambda key: float(scores[key][present].mean())) if present.any() else (lambda _: 0.0)
    return {
        "n": int(cm.sum()),
        "uf1": mean("f1"),
        "uar": mean("recall"),
        "accuracy": accuracy(y_true, y_pred),
        "macro_precision": mean("precision"),
        "war": _weighted(cm, "recall"),
        "wf1": _weighted(cm, "f1"),
        "per_class": {
            name: {
                "precision": float(scores["precision"][i]),
                "recall": float(scores["recall"][i]),
                "f1": float(scores["f1"][i]),
                "support": int(scores["support"][i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion": cm.tolist(),
    }


def pooled_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    class_names: Sequence[str],
    groups: Sequence[str] | None = None,
) -> dict:
    """Overall figures plus the same figures per group (the source dataset of each sample)."""
    result = {"overall": classification_metrics(y_true, y_pred, class_names), "per_dataset": {}}
    if groups is not None:
        g = np.asarray(groups)
        t, p = _as_labels(y_true), _as_labels(y_pred)
        if g.shape != t.shape:
            raise ValueError(f"{g.size} groups for {t.size} predictions")
        for name in dict.fromkeys(g.tolist()):
            mask = g == name
            result["per_dataset"][name] = classification_metrics(t[mask], p[mask], class_names)
    return result
