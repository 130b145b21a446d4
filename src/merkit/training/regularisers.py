"""The recipe's regularisers: weight averaging (`ema`), sharpness-aware steps (`sam`), `mixup`.

Each works on the grouped models of the trainer, where G copies (one per fold or seed
member) train side by side, and keeps the copies independent: the average is element-wise,
the sharpness step normalises each copy's gradient by that copy's own norm, and mixup pairs a
sample only with another of the same copy's batch, drawing from that copy's generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """An exponential moving average of a model's weights and float buffers (`recipe.ema`).

    Element-wise, so the copies of a grouped model are averaged independently. The decay ramps
    up as (1 + n) / (10 + n) over the first updates so early weights do not linger.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model, self.decay, self.updates = model, decay, 0
        self.state = {
            k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()
        }

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = self.model.state_dict()
        for key, avg in self.state.items():
            avg.lerp_(current[key], 1 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model for the block, the trained ones restored after."""
        saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.load()
        try:
            yield
        finally:
            self.model.load_state_dict(saved)

    def load(self) -> None:
        self.model.load_state_dict(self.state, strict=False)


def sharpness_step(
    model: nn.Module, copies: int, rho: float, loss: Callable[[], torch.Tensor]
) -> None:
    """Sharpness-aware minimisation (Foret et al. 2021, `recipe.sam` = rho): replace the
    gradient g by the one at w + rho g / ||g||, the worst nearby weights to first order.

    ||g|| is each copy's own norm, so copies stay independent; the perturbed pass (`loss()`)
    leaves BatchNorm's running statistics alone (they describe the weights actually kept).
    """
    params = [p for p in model.parameters() if p.grad is not None]
    norm = sum(p.grad.view(copies, -1).pow(2).sum(1) for p in params).sqrt()  # (G,)
    scale = (rho / norm.clamp_min(1e-12))[:, None]
    steps = [(p.grad.view(copies, -1) * scale).view_as(p) for p in params]
    with torch.no_grad():
        for p, step in zip(params, steps, strict=True):
            p.add_(step)
    for p in params:
        p.grad = None
    with running_stats_frozen(model):
        loss().backward()
    with torch.no_grad():
        for p, step in zip(params, steps, strict=True):
            p.sub_(step)


@contextmanager
def running_stats_frozen(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers still normalise by the batch but leave their running statistics as is."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum


def mixup(
    xb: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    gens: list[torch.Generator],
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix each sample with another of the same copy's batch, one Beta(a, a) draw per copy.

    `xb` is copy-major (G*B, ...), `target` (G, B, K) and `weight` (G, B).
    """
    g, b = len(gens), target.shape[1]
    lam, perm = [], []
    for gen in gens:
        lam.append(beta(alpha, gen))
        perm.append(torch.randperm(b, generator=gen))
    lam_t = torch.tensor(lam, device=xb.device).view(g, 1)
    order = torch.stack(perm).to(xb.device)  # (G, B), drawn on the CPU from the jobs' seeds
    xs = xb.view(g, b, *xb.shape[1:])
    other = torch.stack([xs[i, order[i]] for i in range(g)])
    lx = lam_t.view(g, 1, 1, 1, 1)
    mixed = (lx * xs + (1 - lx) * other).view_as(xb)
    tgt = lam_t[..., None] * target + (1 - lam_t[..., None]) * target.gather(
        1, order[..., None].expand_as(target)
    )
    wgt = lam_t * weight + (1 - lam_t) * weight.gather(1, order)
    return mixed, tgt, wgt


def beta(a: float, generator: torch.Generator) -> float:
    """A Beta(a, a) draw from `generator` (Johnk's method), so mixup follows the job's seed."""
    while True:
        u, v = torch.rand(2, generator=generator).tolist()
        x, y = u ** (1 / a), v ** (1 / a)
        if 0 < x + y <= 1:
            return x / (x + y)
