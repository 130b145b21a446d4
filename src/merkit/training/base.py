"""The contract between experiments and a learning method: what an `Engine` takes and gives.

The runner (`merkit train`), the leakage audit (`merkit audit`) and final models (`merkit fit`)
drive an engine and know nothing of how it learns: they hand it a `Recipe`, the prepared arrays
as models take them, and folds of (train, test) index arrays, and get per fold the test samples'
class probabilities back. The folds, their saving and resuming, the executors and the reports
are all outside the engine, so any method that fills this contract gets them for free: the
torch engine (`merkit.training.engine.TorchEngine`) for every registered network today, and,
for example, a scikit-learn classifier on hand-made features tomorrow.

Nothing here imports torch: the runner, the executors and the reports stay light.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from merkit.evaluation.splitters import Fold
from merkit.training.results import FoldResult

if TYPE_CHECKING:
    from merkit.training.recipe import Recipe

# progress(done, total): finished and planned job-epochs of the engine call
Progress = Callable[[int, int], None]

# What `Engine.fit_predict` returns per fold:
#   "probs"   (n_test, K) class probabilities of the fold's test samples
#   "history" a FoldResult: those probabilities and the per-epoch training curves
#   "epochs"  (epochs, n_test, K) the probabilities after every epoch (the leakage audit's
#             "oracle" figure only: choosing an epoch on them is peeking)
Output = Literal["probs", "history", "epochs"]
OUTPUTS: tuple[str, ...] = ("probs", "history", "epochs")


class Engine(Protocol):
    """A learning method: `fit_predict` on folds for experiments, `fit` for a final model.

    `fit_predict` must train each fold on its training indices only (and `groups`, the subject
    of every sample, may only be used to carve validation subjects out of them), and should
    report progress as `progress(done, total)`. An engine that records no curves may answer
    "history" with bare probability arrays; one without epochs answers "epochs" with a single
    one. Results must depend on `seed` and the fold, not on which other folds share the call,
    so that a resumed run equals an uninterrupted one.
    """

    # The two signatures, written compactly: `merkit.training.engine` spells them out in full.
    # fmt: off
    def fit_predict(
        self, recipe: Recipe, x: np.ndarray, y: np.ndarray, folds: Sequence[Fold],
        num_classes: int, seed: int = 0, *, groups: np.ndarray | None = None,
        progress: Progress | None = None, output: Output = "probs",
    ) -> Sequence[np.ndarray] | Sequence[FoldResult]: ...

    def fit(
        self, recipe: Recipe, x: np.ndarray, y: np.ndarray, num_classes: int, seed: int = 0, *,
        progress: Progress | None = None,
    ) -> Any: ...
    # fmt: on


def default_engine() -> Engine:
    """The engine experiments use unless they are given one (torch loads only here, lazily)."""
    from merkit.training.engine import TorchEngine

    return TorchEngine()
