"""Fitting the classic models (hand-made features + kernel SVM) with scikit-learn.

A classic model (`merkit.models.svm.FeatureSVM`, registered `training="closed-form"`) is
fitted in one solve, not by epochs: its torch feature extractor turns the prepared arrays into
feature vectors, and per fold a `StandardScaler` + `SVC(class_weight="balanced")` is fitted on
the training samples only, wrapped in `CalibratedClassifierCV(method="temperature",
ensemble=False)` for probabilities. The fitted objects are then copied into the model's
`SVMHead` buffers, and the test probabilities are computed by that head: what is evaluated is
exactly what `merkit fit` ships and `merkit predict` / `merkit export` run.

Why temperature scaling: it divides the SVC's one-vs-rest decision values by one fitted
temperature before a softmax, so the predicted class is always the SVM's own decision, while the
probabilities become comparable with a network's for ensembling. (On the MEGC2019 development
maps under LOSO, Platt's per-class sigmoids gave the same predictions and a log-loss within
0.01.) The temperature is fitted on out-of-fold decisions of a stratified 5-fold split of the
training samples, shuffled with the run seed, so runs are reproducible; a fold's result depends
only on its own training samples and the seed.

`ClassicEngine` is the experiment-side contract (`fit_predict` on folds, `fit` for a final
model) and `ClassicClassifier` the scikit-learn-style one (`fit` / `predict_proba` on arrays).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import nn

from merkit.errors import ConfigError
from merkit.evaluation.splitters import Fold
from merkit.models import create_model, get_descriptor
from merkit.models.svm import FeatureSVM, SVMHead
from merkit.preprocess.arrays import as_float32
from merkit.training.base import Output, Progress, check_output
from merkit.training.devices import CPU, Placement
from merkit.training.recipe import Recipe, default_recipe
from merkit.training.results import FoldResult

CALIBRATION_FOLDS = 5
# Samples per feature-extraction batch: bounds the memory of LBP-TOP's neighbour differences
# (16 clips of 8 x 64 x 64: about 60 MB).
FEATURE_BATCH = 16


def extract_features(features: nn.Module, x: np.ndarray) -> np.ndarray:
    """(N, F) float32 features of prepared model inputs, computed in batches."""
    out = []
    with torch.no_grad():
        for start in range(0, len(x), FEATURE_BATCH):
            batch = as_float32(np.ascontiguousarray(x[start : start + FEATURE_BATCH]))
            out.append(features(torch.from_numpy(batch)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def fit_head(
    head: SVMHead, features: np.ndarray, y: np.ndarray, seed: int, balanced: bool = True
) -> CalibratedClassifierCV:
    """Fit the scaler, SVC (`balanced` class weights) and temperature on (features, y), load them
    into `head`, and return the fitted `CalibratedClassifierCV` (the reference `head` equals)."""
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ConfigError(f"an SVM needs training samples of two classes or more, got {classes}")
    splits = min(CALIBRATION_FOLDS, int(counts.min()))
    if splits < 2:
        rare = int(classes[counts.argmin()])
        raise ConfigError(
            f"class {rare} has a single training sample; calibrating the SVM's probabilities "
            "needs at least 2 per class"
        )
    weight = "balanced" if balanced else None
    svc = SVC(kernel=head.kernel, C=head.C, gamma=head.gamma, class_weight=weight)
    calibrated = CalibratedClassifierCV(
        make_pipeline(StandardScaler(), svc),
        method="temperature",
        ensemble=False,
        cv=StratifiedKFold(splits, shuffle=True, random_state=seed),
    )
    calibrated.fit(np.asarray(features, dtype=np.float64), np.asarray(y))
    head.load_fitted(calibrated)
    return calibrated


def head_probabilities(head: SVMHead, features: np.ndarray) -> np.ndarray:
    """(N, K) class probabilities of the fitted `head` on precomputed features."""
    with torch.no_grad():
        return head(torch.from_numpy(np.asarray(features, np.float32))).softmax(-1).double().numpy()


def build(recipe: Recipe, num_classes: int, x: np.ndarray) -> FeatureSVM:
    """An unfitted classic model of `recipe` (validated when its experiment was built) for
    inputs shaped like `x` (N, C, H, W)."""
    if not get_descriptor(recipe.model).closed_form:
        raise ConfigError(f"model {recipe.model!r} is trained by gradient, not in closed form")
    if x.ndim != 4:
        raise ConfigError(f"expected inputs of shape (N, C, H, W), got {x.shape}")
    return create_model(recipe.model, num_classes, x.shape[1], **recipe.model_kwargs)


class ClassicEngine:
    """The engine of the closed-form models: per fold, one SVM fitted on its training samples."""

    def fit_predict(
        self,
        recipe: Recipe,
        x: np.ndarray,
        y: np.ndarray,
        folds: Sequence[Fold],
        num_classes: int,
        seed: int = 0,
        *,
        groups: np.ndarray | Sequence[str] | None = None,
        progress: Progress | None = None,
        output: Output = "probs",
        placement: Placement = CPU,
    ) -> list[np.ndarray] | list[FoldResult]:
        """Per fold, the test samples' probabilities ("probs"), the same as a `FoldResult`
        without curves ("history"), or as a single "epoch" (1, n_test, K) ("epochs": a model
        without epochs has no epoch to choose, so the audit's oracle equals its LOSO).
        Features and SVMs are computed on the CPU whatever the `placement` (a solve, not a
        training loop: a GPU would not shorten it)."""
        check_output(output)
        model = build(recipe, num_classes, x)
        features = extract_features(model.features, x)
        y = np.asarray(y)
        results: list = []
        for i, (train, test) in enumerate(folds):
            if len(train) == 0:
                raise ValueError(f"fold {i} has no training samples")
            fit_head(model.head, features[train], y[train], seed, recipe.class_weighted)
            probs = head_probabilities(model.head, features[test])
            results.append(
                {"probs": probs, "history": FoldResult(probs), "epochs": probs[None]}[output]
            )
            if progress is not None:
                progress(i + 1, len(folds))
        return results

    def fit(
        self,
        recipe: Recipe,
        x: np.ndarray,
        y: np.ndarray,
        num_classes: int,
        seed: int = 0,
        *,
        progress: Progress | None = None,
        placement: Placement = CPU,
    ) -> nn.Module:
        """The model fitted on all samples, in eval mode (on the CPU, as `fit_predict`)."""
        model = build(recipe, num_classes, x)
        features = extract_features(model.features, x)
        fit_head(model.head, features, np.asarray(y), seed, recipe.class_weighted)
        if progress is not None:
            progress(1, 1)
        return model.eval()


class ClassicClassifier:
    """A registered classic model with scikit-learn's `fit` / `predict_proba` on prepared
    arrays (N, C, H, W); `model_` is the fitted torch module, `calibrated_` the fitted
    scikit-learn classifier it reproduces."""

    def __init__(self, model: str, num_classes: int, seed: int = 0, **model_kwargs: object):
        self.recipe = default_recipe(model)
        self.recipe.model_kwargs = dict(model_kwargs)
        self.num_classes, self.seed = num_classes, seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> ClassicClassifier:
        self.model_ = build(self.recipe, self.num_classes, x)
        features = extract_features(self.model_.features, x)
        balanced = self.recipe.class_weighted
        self.calibrated_ = fit_head(self.model_.head, features, np.asarray(y), self.seed, balanced)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return head_probabilities(self.model_.head, extract_features(self.model_.features, x))
