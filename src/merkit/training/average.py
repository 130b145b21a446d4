"""Fitting an average of models (registry `training="average"`, e.g. `recommended`).

An average is an equal-weight probability average of registered models, its `members`. Each
member is fitted by its own engine (`engine_for`: torch for a network, scikit-learn for a
classic SVM) with its own shipped recipe and the run's seed, on the same folds and the same
prepared arrays, and the average's probabilities are the equal-weight mean of the members'.
Nothing is fitted on the held-out subject, nor on out-of-fold predictions: the weights are fixed,
so a fold's result is the mean of results that each depend on that fold's training samples only.

`fit` returns one `ProbabilityAverage` of the fitted members: the module `create_model` builds
for the average's name, so checkpoints, `merkit predict` and the ONNX export take it whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from merkit.evaluation.splitters import Fold
from merkit.models.blocks import ProbabilityAverage
from merkit.training.base import Output, Progress, check_output, engine_for
from merkit.training.devices import CPU, Placement
from merkit.training.recipe import Recipe
from merkit.training.results import FoldResult
from merkit.training.validation import member_recipes


class _MemberProgress:
    """One progress count over the members, which run one after the other: each member's
    (done, total) is added to the totals of the members before it."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress, self.offset, self.total = progress, 0, 0

    def __call__(self, done: int, total: int) -> None:
        self.total = total
        if self.progress is not None:
            self.progress(self.offset + done, self.offset + total)

    def next_member(self) -> None:
        self.offset, self.total = self.offset + self.total, 0


def _mean(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Equal-weight mean; a member without epochs (1, n, K) counts the same at every epoch."""
    return np.mean(np.broadcast_arrays(*arrays), axis=0)


def merge_members(
    members: Sequence[Recipe], parts: Sequence[Sequence], output: Output
) -> list[np.ndarray] | list[FoldResult]:
    """Per fold, the members' results (`parts[member][fold]`) merged: the mean probabilities
    (or probability curves), and for "history" each member's curves named "<model> <curve>"."""
    folds = range(len(parts[0]))
    if output != "history":
        return [_mean([part[f] for part in parts]) for f in folds]
    results = []
    for f in folds:
        fold = [FoldResult.of(part[f]) for part in parts]
        history = {
            f"{member.model} {name}": values
            for member, result in zip(members, fold, strict=True)
            for name, values in result.history.items()
        }
        results.append(FoldResult(_mean([r.probs for r in fold]), history))
    return results


class AverageEngine:
    """The engine of the averages of models: every member's engine on the same folds, averaged."""

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
        """Per fold, the mean over members of what each member's engine gives for `output`
        ("history": curves named "<member> <curve>")."""
        check_output(output)
        members = member_recipes(recipe)
        counter = _MemberProgress(progress)
        parts = []
        for member in members:
            engine = engine_for(member)
            kwargs = {
                "groups": groups,
                "progress": counter,
                "output": output,
                "placement": placement,
            }
            parts.append(engine.fit_predict(member, x, y, folds, num_classes, seed, **kwargs))
            counter.next_member()
        return merge_members(members, parts, output)

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
        """Every member fitted on all samples, as one probability-averaging module."""
        counter = _MemberProgress(progress)
        fitted = []
        for member in member_recipes(recipe):
            engine = engine_for(member)
            fitted.append(
                engine.fit(member, x, y, num_classes, seed, progress=counter, placement=placement)
            )
            counter.next_member()
        return ProbabilityAverage(fitted).eval()
