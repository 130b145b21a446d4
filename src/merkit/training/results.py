"""What training one fold gives back: its test probabilities and its per-epoch history.

Kept free of torch so that the runner, the executors and the report can pass results around
without loading the training stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

History = dict[str, list[float]]


@dataclass(frozen=True)
class FoldResult:
    """One fold: (n_test, K) probabilities and series such as `train_loss` (one value per epoch)."""

    probs: np.ndarray
    history: History = field(default_factory=dict)

    @classmethod
    def of(cls, result: FoldResult | np.ndarray) -> FoldResult:
        """An engine may return bare probability arrays (no history); normalise to FoldResult."""
        if isinstance(result, FoldResult):
            return cls(np.asarray(result.probs, dtype=np.float64), result.history)
        return cls(np.asarray(result, dtype=np.float64))


def mean_history(histories: Sequence[History]) -> History:
    """Series averaged epoch by epoch over the histories that have them."""
    names = dict.fromkeys(name for h in histories for name in h)
    merged: History = {}
    for name in names:
        series = [h[name] for h in histories if h.get(name)]
        if not series:
            continue
        length = max(len(s) for s in series)
        padded = np.full((len(series), length), np.nan)
        for row, values in zip(padded, series, strict=True):
            row[: len(values)] = values
        merged[name] = [float(v) for v in np.nanmean(padded, axis=0)]
    return merged
