"""The contract between experiments and a learning method: what an `Engine` takes and gives.

The runner (`merkit train`), the leakage audit (`merkit audit`) and final models (`merkit fit`)
drive an engine and know nothing of how it learns: they hand it a `Recipe`, the prepared arrays
as models take them, and folds of (train, test) index arrays, and get per fold the test samples'
class probabilities back. The folds, their saving and resuming, the executors and the reports
are all outside the engine, so any method that fills this contract gets them for free: the
torch engine (`merkit.training.engine.TorchEngine`) for the networks, the closed-form engine
(`merkit.training.closed_form.ClassicEngine`) for the classic SVMs, and the average engine
(`merkit.training.average.AverageEngine`) for a probability average of registered models.
Which one fits a recipe is written in its model's descriptor and read in one place,
`engine_for`.

Nothing here imports torch: the runner, the executors and the reports stay light.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from merkit.evaluation.splitters import Fold
from merkit.training.devices import CPU, Placement
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


def check_output(output: str) -> None:
    """An engine asked for an output it does not know is a caller's bug (not a user error)."""
    if output not in OUTPUTS:
        raise ValueError(f"output {output!r} must be one of {OUTPUTS}")


class Engine(Protocol):
    """A learning method: `fit_predict` on folds for experiments, `fit` for a final model.

    `fit_predict` must train each fold on its training indices only (and `groups`, the subject
    of every sample, may only be used to carve validation subjects out of them), and should
    report progress as `progress(done, total)`. An engine that records no curves may answer
    "history" with bare probability arrays; one without epochs answers "epochs" with a single
    one. `placement` says on which device and in what precision to compute
    (`merkit.training.devices`); an engine that runs only on the CPU may ignore it. Results must
    depend on `seed` and the fold, not on which other folds share the call, so that a resumed run
    equals an uninterrupted one.
    """

    # The two signatures, written compactly: `merkit.training.engine` spells them out in full.
    # fmt: off
    def fit_predict(
        self, recipe: Recipe, x: np.ndarray, y: np.ndarray, folds: Sequence[Fold],
        num_classes: int, seed: int = 0, *, groups: np.ndarray | None = None,
        progress: Progress | None = None, output: Output = "probs",
        placement: Placement = CPU,
    ) -> Sequence[np.ndarray] | Sequence[FoldResult]: ...

    def fit(
        self, recipe: Recipe, x: np.ndarray, y: np.ndarray, num_classes: int, seed: int = 0, *,
        progress: Progress | None = None, placement: Placement = CPU,
    ) -> Any: ...
    # fmt: on


def engine_for(recipe: Recipe) -> Engine:
    """The engine that fits `recipe`, as its model's descriptor says how it learns: the torch
    engine for networks ("gradient"), the scikit-learn one for the classic SVMs ("closed-form"),
    the average engine for a probability average of registered models ("average"). The only
    place that decides; engines load lazily (torch, scikit-learn)."""
    from merkit.models import get_descriptor

    training = get_descriptor(recipe.model).training
    if training == "closed-form":
        from merkit.training.closed_form import ClassicEngine

        return ClassicEngine()
    if training == "average":
        from merkit.training.average import AverageEngine

        return AverageEngine()
    from merkit.training.engine import TorchEngine

    return TorchEngine()


class RegistryEngine:
    """An `Engine` handing each call to `engine_for(recipe)`: experiments mixing networks,
    classic models and averages (a config's `extra_recipes`) run through one engine object."""

    def fit_predict(
        self, recipe: Recipe, *args: Any, **kwargs: Any
    ) -> Sequence[np.ndarray] | Sequence[FoldResult]:
        return engine_for(recipe).fit_predict(recipe, *args, **kwargs)

    def fit(self, recipe: Recipe, *args: Any, **kwargs: Any) -> Any:
        return engine_for(recipe).fit(recipe, *args, **kwargs)


def default_engine() -> Engine:
    """The engine experiments use unless they are given one: each recipe goes to the engine of
    its model (`engine_for`)."""
    return RegistryEngine()
