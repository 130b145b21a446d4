"""What the classic models share: hand-made features pooled over a grid, then a kernel SVM.

A classic model (`hoof-svm`, `lbptop-svm`) is a `FeatureSVM`: a feature extractor written in
torch ops and an `SVMHead` holding, as buffers, everything a fitted scikit-learn classifier
computes at prediction time -- the StandardScaler, the support vectors with their one-vs-one dual
coefficients, the one-vs-rest vote aggregation of `SVC.decision_function`, and the temperature
of `CalibratedClassifierCV(method="temperature")`. So a fitted classic model is a plain
`nn.Module`: it saves as tensors (checkpoints load with `weights_only=True`), runs in
`merkit predict`, and exports to ONNX like the networks. It is fitted by a solver, not by
gradient steps: the registry marks it `training="closed-form"` and
`merkit.training.closed_form` fits it (`load_fitted` fills the head from the scikit-learn objects).

The same torch features feed the fit and the prediction, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from merkit.errors import ConfigError

KERNELS = ("rbf", "linear")
# Logit of a class that no training sample had: its probability is exactly 0 after the softmax.
ABSENT_LOGIT = -1e4


def cell_index(length: int, cells: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, cells) 0/1 matrix putting each of `length` positions in one of `cells` runs of
    (nearly) equal size; a matrix product with it pools any size into any grid, and exports."""
    owner = torch.arange(length, device=device) * cells // length
    return (owner[:, None] == torch.arange(cells, device=device)[None, :]).to(torch.float32)


def grid_mean(x: torch.Tensor, cells: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, cells, cells): the mean of each channel over each cell of a grid."""
    rows, cols = cell_index(x.shape[-2], cells, x.device), cell_index(x.shape[-1], cells, x.device)
    sums = torch.einsum("nchw,hi,wj->ncij", x, rows.to(x.dtype), cols.to(x.dtype))
    counts = rows.sum(0)[:, None] * cols.sum(0)[None, :]
    return sums / counts.to(x.dtype)


def median_centred(maps: torch.Tensor) -> torch.Tensor:
    """(..., H, W) minus each map's median (the mean of the two middle values for even sizes).

    Published maps are min-max scaled per map, so "no motion" is not 0 but wherever most of the
    face sits: its median. Sorting rather than `torch.median`, which has no ONNX export."""
    ordered = maps.flatten(-2).sort(dim=-1).values
    n = ordered.shape[-1]
    median = (ordered[..., (n - 1) // 2] + ordered[..., n // 2]) / 2
    return maps - median[..., None, None]


def check_grid(name: str, cells: int, height: int, width: int) -> None:
    """A grid finer than the input would leave cells without pixels."""
    if cells < 1 or cells > min(height, width):
        raise ConfigError(f"{name}: a grid of {cells}x{cells} cells does not fit {height}x{width}")


def class_pairs(k: int) -> list[tuple[int, int]]:
    """The one-vs-one pairs in libsvm's order: (0, 1), (0, 2), ..., (k - 2, k - 1)."""
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


class SVMHead(nn.Module):
    """A fitted SVC (behind a StandardScaler) with temperature-scaled probabilities, as buffers.

    `kernel`, `C` and `gamma` are the settings the fit uses (like a dropout rate, they say how
    the module is trained); the buffers hold what the fit found. The arithmetic runs in float64,
    as libsvm's does, so the probabilities match scikit-learn's `predict_proba` to ~1e-7. Before
    it is fitted the head answers uniform probabilities (input checks and profiling only).
    """

    def __init__(
        self, num_classes: int, kernel: str = "rbf", C: float = 1.0, gamma: float | str = "scale"
    ) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ConfigError(f"SVM kernel {kernel!r} must be one of {', '.join(KERNELS)}")
        if not C > 0:
            raise ConfigError(f"SVM C must be positive, got {C}")
        if not (gamma in ("scale", "auto") or (isinstance(gamma, int | float) and gamma > 0)):
            raise ConfigError(f"SVM gamma must be 'scale', 'auto' or positive, got {gamma!r}")
        self.num_classes, self.kernel, self.C, self.gamma = num_classes, kernel, float(C), gamma
        double = torch.float64
        self.register_buffer("mean", torch.zeros(0, dtype=double))  # (F,) scaler
        self.register_buffer("scale", torch.ones(0, dtype=double))  # (F,)
        self.register_buffer("support", torch.zeros(0, 0, dtype=double))  # (S, F) scaled
        self.register_buffer("coef", torch.zeros(0, 0, dtype=double))  # (pairs, S)
        self.register_buffer("intercept", torch.zeros(0, dtype=double))  # (pairs,)
        self.register_buffer("kernel_gamma", torch.zeros((), dtype=double))
        self.register_buffer("inverse_temperature", torch.ones((), dtype=double))
        self.register_buffer("classes", torch.zeros(0, dtype=torch.long))  # (k,) trained classes

    @property
    def fitted(self) -> bool:
        return self.classes.numel() > 0

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Take the saved buffers' shapes (they depend on the data the head was fitted on)."""
        for name, buffer in self._buffers.items():
            saved = state_dict.get(prefix + name)
            if buffer is not None and isinstance(saved, torch.Tensor):
                self._buffers[name] = torch.empty_like(saved, dtype=buffer.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def load_fitted(self, calibrated: Any) -> SVMHead:
        """Fill the buffers from a fitted `CalibratedClassifierCV(Pipeline(StandardScaler, SVC),
        method="temperature", ensemble=False)` with integer classes in 0..num_classes-1."""
        (fitted,) = calibrated.calibrated_classifiers_
        scaler, svc = fitted.estimator[0], fitted.estimator[-1]
        n_support = [int(n) for n in svc.n_support_]
        starts = [sum(n_support[:i]) for i in range(len(n_support))]
        k, dual = len(n_support), torch.as_tensor(svc.dual_coef_, dtype=torch.float64)
        pairs = class_pairs(k)
        coef = torch.zeros(len(pairs), dual.shape[1], dtype=torch.float64)
        for p, (i, j) in enumerate(pairs):
            rows_i = slice(starts[i], starts[i] + n_support[i])
            rows_j = slice(starts[j], starts[j] + n_support[j])
            # libsvm keeps the coefficients of pair (i, j) in row j-1 for class i's vectors and
            # row i for class j's; with two classes there is one row (scikit-learn's signs).
            coef[p, rows_i] = dual[0 if k == 2 else j - 1, rows_i]
            coef[p, rows_j] = dual[0 if k == 2 else i, rows_j]
        values = {
            "mean": scaler.mean_,
            "scale": scaler.scale_,
            "support": svc.support_vectors_,
            "coef": coef,
            "intercept": svc.intercept_,
            "kernel_gamma": svc._gamma,  # the number 'scale' / 'auto' resolved to
            "inverse_temperature": fitted.calibrators[0].beta_,
            "classes": svc.classes_,
        }
        for name, value in values.items():
            dtype = torch.long if name == "classes" else torch.float64
            self._buffers[name] = torch.as_tensor(value, dtype=dtype).clone()
        return self

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, F) features -> (N, num_classes) logits (log-probabilities up to a constant)."""
        if not self.fitted:
            return features.new_zeros(features.shape[0], self.num_classes)
        z = (features.to(torch.float64) - self.mean) / self.scale
        if self.kernel == "rbf":
            sq = (z * z).sum(1, keepdim=True) - 2 * z @ self.support.T
            sq = sq + (self.support * self.support).sum(1)[None, :]
            gram = torch.exp(-self.kernel_gamma * sq.clamp_min(0))
        else:
            gram = z @ self.support.T
        # (N, pairs); > 0 favours a pair's first class (with two classes: the second, as sklearn)
        decision = gram @ self.coef.T + self.intercept
        logits = self.inverse_temperature * self._one_vs_rest(decision)
        classes = torch.arange(self.num_classes, device=logits.device)
        place = (self.classes[:, None] == classes[None, :]).to(logits.dtype)
        absent = (1 - place.sum(0)) * ABSENT_LOGIT
        return (logits @ place + absent).to(features.dtype)

    def _one_vs_rest(self, decision: torch.Tensor) -> torch.Tensor:
        """`SVC.decision_function`'s one-vs-rest scores from the pairwise decisions: votes plus
        the summed confidences squashed into (-1/3, 1/3); two classes give (-d, d)."""
        k = self.classes.numel()
        if k == 2:
            return torch.cat([-decision, decision], dim=1)
        first = torch.zeros(len(class_pairs(k)), k, dtype=decision.dtype, device=decision.device)
        second = torch.zeros_like(first)
        for p, (i, j) in enumerate(class_pairs(k)):
            first[p, i], second[p, j] = 1, 1
        wins = (decision >= 0).to(decision.dtype)
        votes = wins @ first + (1 - wins) @ second
        confidence = decision @ (first - second)
        return votes + confidence / (3 * (confidence.abs() + 1))


class FeatureSVM(nn.Module):
    """A classic model: `features` (torch ops, no parameters) then a fitted `head`."""

    def __init__(self, features: nn.Module, head: SVMHead) -> None:
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
