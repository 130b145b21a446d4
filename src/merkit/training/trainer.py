"""The trainer: one bucket of (fold, member) jobs trained side by side as one grouped model.

Models registered `groupable` are built with `groups=G`, so the G models of a bucket train as one
network of grouped convolutions, each copy on its own batches. The copies share nothing:
BatchNorm is per channel, the loss is a sum of per-copy losses, and Adam/AdamW/SGD update every
element independently (no gradient clipping). A bucket of one job is an ordinary model.

Each job draws its initial weights, batches, augmentations, dropout masks and mixup pairs from
its own generator seeded by the job's seed, so a fold gives the same result alone, in a bucket,
or after a resume (to float rounding). All draws come from CPU generators, so a seed gives the
same batches, augmentations and masks on every device. Training runs where its `Placement` says,
under `merkit.training.devices.determinism` (deterministic kernels on the CPU, on a GPU when
asked), switched on here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from merkit.errors import ConfigError, TrainingDiverged
from merkit.models import create_model, get_descriptor, stack_models, unstack_model
from merkit.models.blocks import use_copy_generators
from merkit.training.augment import AugmentParams, apply_params, hflip_flow, sample_params
from merkit.training.devices import (
    CPU,
    Placement,
    as_float,
    autocast,
    determinism,
    grad_scaler,
    resolve_device,
)
from merkit.training.recipe import Recipe
from merkit.training.regularisers import WeightAverage, mixup, sharpness_step
from merkit.training.results import History

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # maps, targets, sample weights
# Per job: its test-probability curve (epochs or 1, n_test, K) and its per-epoch history.
Trained = tuple[np.ndarray, History]

# The per-epoch series a job records (the last two only with validation subjects).
SERIES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


@dataclass
class FoldMember:
    """One model to train: seed member `member` of fold `fold`, with its own seed."""

    fold: int
    member: int
    train: np.ndarray
    test: np.ndarray
    val: np.ndarray
    seed: int


class Counter:
    """Counts finished job-epochs for a progress callback `callback(done, total)`."""

    def __init__(self, callback: Callable[[int, int], None] | None, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0

    def add(self, n: int) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)


def train_bucket(
    recipe: Recipe,
    bucket: list[FoldMember],
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    record: bool,
    counter: Counter,
    placement: Placement = CPU,
) -> list[Trained]:
    """Train one bucket where `placement` says (deterministic kernels on the CPU); per job its
    curve and history."""
    device = resolve_device(placement.device)
    with determinism(device, placement.deterministic):
        trainer = BucketTrainer(recipe, bucket, x, y, num_classes, placement)
        return trainer.train(counter, record)


def steps_per_epoch(job: FoldMember, batch_size: int) -> int:
    return math.ceil(len(job.train) / min(batch_size, len(job.train)))


def epochs_run(recipe: Recipe, steps: int) -> int:
    """Epochs a job of `steps` steps per epoch runs: `recipe.epochs`, or fewer when
    `recipe.max_steps` ends it earlier."""
    if recipe.max_steps <= 0:
        return recipe.epochs
    return min(recipe.epochs, math.ceil(recipe.max_steps / steps))


class BatchStream:
    """Endless batches of a job's training indices: reshuffled every pass, fixed batch size.

    Unshuffled (`shuffle=False`), every epoch is the indices in their given order, its last
    batch filled up from the start of that order, and the next epoch starts again at the first.
    """

    def __init__(
        self,
        indices: np.ndarray,
        batch_size: int,
        generator: torch.Generator,
        shuffle: bool = True,
    ) -> None:
        self.indices = torch.from_numpy(indices)
        self.batch_size, self.generator, self.shuffle = batch_size, generator, shuffle
        self.buffer = torch.zeros(0, dtype=torch.int64)

    def next(self) -> torch.Tensor:
        if not self.shuffle and len(self.buffer) == 0:
            epoch = math.ceil(len(self.indices) / self.batch_size) * self.batch_size
            self.buffer = self.indices[torch.arange(epoch) % len(self.indices)]
        while len(self.buffer) < self.batch_size:
            order = torch.randperm(len(self.indices), generator=self.generator)
            self.buffer = torch.cat([self.buffer, self.indices[order]])
        batch, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size :]
        return batch


class BucketTrainer:
    """Trains the jobs of one bucket as one grouped model (or one ordinary model if alone).

    The prepared arrays stay on the host, in their stored dtype (float32 maps; uint8 or float16
    frames, possibly memory-mapped): each batch is gathered there, copied to the device from
    pinned memory without blocking, and only then made float32 and augmented, on the device.
    """

    def __init__(
        self,
        recipe: Recipe,
        jobs: list[FoldMember],
        x: np.ndarray,
        y: np.ndarray,
        num_classes: int,
        placement: Placement = CPU,
    ) -> None:
        self.recipe, self.jobs, self.k = recipe, jobs, num_classes
        self.g = len(jobs)
        self.device = resolve_device(placement.device)
        self.precision = placement.precision
        self.x = x
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device)
        self.in_chans = x.shape[1]
        self.hooks = get_descriptor(recipe.model).hooks
        self.model = self._build().to(self.device)
        self.batch = min(recipe.batch_size, len(jobs[0].train))
        self.steps = steps_per_epoch(jobs[0], recipe.batch_size)
        self.epochs = epochs_run(recipe, self.steps)
        self.total_steps = self.epochs * self.steps
        if recipe.max_steps > 0:
            self.total_steps = min(self.total_steps, recipe.max_steps)
        self.class_weight = torch.stack([self._class_weight(j) for j in jobs])  # (G, K)

    def _single(self, job: FoldMember) -> nn.Module:
        torch.manual_seed(job.seed)
        return create_model(self.recipe.model, self.k, self.in_chans, **self.recipe.model_kwargs)

    def _build(self) -> nn.Module:
        singles = [self._single(j) for j in self.jobs]
        if self.g == 1:
            return singles[0]
        grouped = create_model(
            self.recipe.model, self.k, self.in_chans, groups=self.g, **self.recipe.model_kwargs
        )
        return stack_models(singles, grouped)

    def single_models(self) -> list[nn.Module]:
        """The trained copies as ordinary models."""
        if self.g == 1:
            return [self.model]
        return [
            unstack_model(self.model, i, self._single(j), self.g) for i, j in enumerate(self.jobs)
        ]

    def _class_weight(self, job: FoldMember) -> torch.Tensor:
        if not self.recipe.class_weighted:
            return torch.ones(self.k, device=self.device)
        train = torch.from_numpy(job.train).to(self.device)
        counts = torch.bincount(self.y[train], minlength=self.k).float()
        weight = counts.sum() / (self.k * counts.clamp_min(1))
        return torch.where(counts > 0, weight, torch.zeros_like(weight))

    def _optimizer(self) -> torch.optim.Optimizer:
        r = self.recipe
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        rest = [p for p in self.model.parameters() if p.ndim <= 1]
        params = [
            {"params": decay, "weight_decay": r.weight_decay},
            {"params": rest, "weight_decay": 0},
        ]
        if r.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=r.lr, eps=r.eps, fused=True)
        if r.optimizer == "adam":  # L2 penalty in the gradient, as the original papers
            return torch.optim.Adam(params, lr=r.lr, eps=r.eps, fused=True)
        if r.optimizer == "sgd":
            return torch.optim.SGD(params, lr=r.lr, momentum=0.9, nesterov=True)
        raise ConfigError(f"unknown optimizer {r.optimizer!r}; choose adamw, adam or sgd")

    def _lr_factor(self, step: int) -> float:
        r, total = self.recipe, self.total_steps
        warmup = r.warmup_epochs * self.steps
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if r.schedule == "constant":
            return 1.0
        if r.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))
        raise ConfigError(f"unknown schedule {r.schedule!r}; choose cosine or constant")

    def train(self, counter: Counter, record: bool = False) -> list[Trained]:
        """Run the schedule; per job its test probabilities (epochs or 1, n_test, K) and its
        per-epoch history (training loss and accuracy; validation ones with val_subjects)."""
        gens = [torch.Generator().manual_seed(j.seed) for j in self.jobs]
        torch.manual_seed(self.jobs[0].seed)  # other randomness (models trained job by job)
        use_copy_generators(self.model, gens)  # each copy's dropout masks from its own draws
        try:
            return self._schedule(counter, record, gens)
        finally:
            use_copy_generators(self.model, None)

    def _schedule(
        self, counter: Counter, record: bool, gens: list[torch.Generator]
    ) -> list[Trained]:
        r = self.recipe
        opt = self._optimizer()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self._lr_factor)
        scaler = grad_scaler(self.device, self.precision)  # fp16 only
        streams = [
            BatchStream(j.train, self.batch, gen, r.shuffle)
            for j, gen in zip(self.jobs, gens, strict=True)
        ]
        average = WeightAverage(self.model, r.ema) if r.ema > 0 else None
        evaluated = average.applied if average else nullcontext
        watch = record or r.val_subjects > 0
        test_curve, series = [], {name: [] for name in SERIES[: 4 if r.val_subjects else 2]}
        for epoch in range(self.epochs):
            self.model.train()
            epoch_loss = torch.zeros(self.g, device=self.device)
            epoch_correct = torch.zeros(self.g, device=self.device)
            steps = min(self.steps, self.total_steps - epoch * self.steps)
            for _ in range(steps):
                host_idx = torch.stack([s.next() for s in streams])  # (G, B), on the CPU
                idx = host_idx.to(self.device, non_blocking=True)
                batch = self._inputs(host_idx, idx, gens)
                loss, copy_loss, copy_correct = self._loss(idx, *batch)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:  # fp16: scaled loss, unscaled before the step
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    if r.sam > 0:
                        again = lambda i=idx, b=batch: self._loss(i, *b)[0]  # noqa: E731
                        sharpness_step(self.model, self.g, r.sam, again)
                    opt.step()
                sched.step()
                if average:
                    average.update()
                epoch_loss += copy_loss
                epoch_correct += copy_correct
            self._check_finite(epoch_loss, len(series["train_loss"]) + 1)
            series["train_loss"].append(epoch_loss.cpu().numpy() / steps)
            series["train_accuracy"].append(epoch_correct.cpu().numpy() / (steps * self.batch))
            if watch:
                with evaluated():
                    test_curve.append(self._probabilities([j.test for j in self.jobs]))
                    if r.val_subjects:
                        val_loss, val_accuracy = self._validation()
                        series["val_loss"].append(val_loss)
                        series["val_accuracy"].append(val_accuracy)
            counter.add(self.g)
        if average:
            average.load()  # the trained model (and a final model from `fit`) is the average
        if not watch:
            test_curve.append(self._probabilities([j.test for j in self.jobs]))
        curves = np.stack(test_curve, axis=1)  # (G, epochs, M, K)
        broken = [i for i in range(self.g) if not np.isfinite(curves[i]).all()]
        if broken:  # finite loss, but weights so large that the test forward overflows
            raise TrainingDiverged(self.recipe.model, self.jobs[broken[0]].fold, r.epochs, r.lr)
        table = {name: np.stack(values, axis=1) for name, values in series.items()}  # (G, E)
        histories = [{n: v[i].tolist() for n, v in table.items()} for i in range(self.g)]
        if record:
            chosen = [c[:, : len(j.test)] for c, j in zip(curves, self.jobs, strict=True)]
        elif r.val_subjects:
            best = np.argmin(table["val_loss"], axis=1)  # per job
            chosen = [
                curves[i, b, None, : len(j.test)]
                for i, (b, j) in enumerate(zip(best, self.jobs, strict=True))
            ]
        else:
            chosen = [c[-1:, : len(j.test)] for c, j in zip(curves, self.jobs, strict=True)]
        return list(zip(chosen, histories, strict=True))

    def _check_finite(self, epoch_loss: torch.Tensor, epoch: int) -> None:
        """Stop a diverged fold: a NaN or infinite loss, weight or BatchNorm statistic would
        otherwise train on and end as NaN probabilities, reported as class 0 everywhere."""
        state = self.model.state_dict().values()
        weights_ok = all(torch.isfinite(t).all() for t in state if t.is_floating_point())
        bad = [i for i, v in enumerate(epoch_loss.tolist()) if not math.isfinite(v)]
        if bad or not weights_ok:
            job = self.jobs[bad[0] if bad else 0]
            raise TrainingDiverged(self.recipe.model, job.fold, epoch, self.recipe.lr)

    def _gather(self, indices: torch.Tensor) -> torch.Tensor:
        """The prepared arrays at `indices` (a CPU tensor) on the device, as float32: gathered on
        the host in their stored dtype, copied from pinned memory without blocking, converted
        there (uint8 frames are intensities x 255)."""
        batch = torch.from_numpy(np.ascontiguousarray(self.x[indices.numpy()]))
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        return as_float(batch.to(self.device, non_blocking=True))

    def _inputs(
        self, host_idx: torch.Tensor, idx: torch.Tensor, gens: list[torch.Generator]
    ) -> Batch:
        """A training batch of every copy: augmented maps, (mixed) targets, sample weights.
        `host_idx` and `idx`: the (G, B) sample indices on the CPU and on the device."""
        r, b = self.recipe, self.batch
        xb = self._gather(host_idx.flatten())  # (G*B, C, H, W), copy-major
        params = AugmentParams.cat(
            [sample_params((b, *xb.shape[1:]), r.augment, gen) for gen in gens]
        )
        xb = apply_params(xb, params.to(self.device), r.augment)
        labels = self.y[idx]
        target = F.one_hot(labels, self.k).float()  # (G, B, K)
        weight = self.class_weight.gather(1, labels)  # (G, B)
        if r.augment.mixup > 0:
            xb, target, weight = mixup(xb, target, weight, gens, r.augment.mixup)
        return xb, target, weight

    def _loss(
        self, idx: torch.Tensor, xb: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sum over copies of each copy's weighted, smoothed (and mixed) cross-entropy, or the
        model's `criterion` (plus its auxiliary loss); also, detached, each copy's loss and
        correct count."""
        r, g, b = self.recipe, self.g, self.batch
        if r.label_smoothing > 0:
            target = target * (1 - r.label_smoothing) + r.label_smoothing / self.k
        with autocast(self.device, self.precision):
            logits = self._forward(xb.view(g, b, *xb.shape[1:])).float()  # (B, G, K)
            nll = self._sample_losses(logits, target.transpose(0, 1)).float()  # (B, G)
        w = weight.transpose(0, 1)
        per_copy = (nll * w).sum(0) / w.sum(0).clamp_min(1e-12)  # (G,)
        correct = (logits.detach().argmax(-1) == self.y[idx].transpose(0, 1)).sum(0)
        loss = per_copy.sum()
        if "aux_loss" in self.hooks and (extra := self.model.aux_loss()) is not None:
            loss = loss + extra.float()
        return loss, per_copy.detach(), correct.float()

    def _sample_losses(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, G) loss of every sample of every copy, from (B, G, K) logits and soft targets:
        the model's own `criterion` when its descriptor declares one, else cross-entropy."""
        if "criterion" in self.hooks:
            return self.model.criterion(target.flatten(1)).view(target.shape[:2])
        return -(target * logits.log_softmax(-1)).sum(-1)

    def _forward(self, xs: torch.Tensor) -> torch.Tensor:
        """Copy-major inputs (G, B, C, H, W) -> logits (B, G, K)."""
        g, b = xs.shape[:2]
        grouped = xs.transpose(0, 1).reshape(b, g * xs.shape[2], *xs.shape[3:])
        return self.model(grouped).view(b, g, self.k)

    @torch.no_grad()
    def _probabilities(self, sides: list[np.ndarray]) -> np.ndarray:
        """Softmax of every copy on its own samples, padded to a common length: (G, M, K)."""
        self.model.eval()
        m = max(1, max(len(s) for s in sides))
        idx = torch.stack(
            [torch.from_numpy(np.resize(s, m) if len(s) else np.zeros(m, np.int64)) for s in sides]
        )
        flat = self._gather(idx.flatten())
        views = [flat]
        if self.recipe.tta_flip:
            views.append(hflip_flow(flat, self.recipe.augment.u_scaling))
        with autocast(self.device, self.precision):
            shape = (self.g, m, *flat.shape[1:])
            probs = [self._forward(v.view(shape)).float().softmax(-1) for v in views]
        mean = probs[0] if len(probs) == 1 else (probs[0] + probs[1]) / 2
        return mean.transpose(0, 1).cpu().numpy()

    @torch.no_grad()
    def _validation(self) -> tuple[np.ndarray, np.ndarray]:
        """Per copy, the mean cross-entropy and the accuracy on its validation subjects."""
        probs = self._probabilities([j.val for j in self.jobs])
        losses, accuracies = [], []
        for p, job in zip(probs, self.jobs, strict=True):
            labels = self.y[torch.from_numpy(job.val).to(self.device)].cpu().numpy()
            p = p[: len(labels)]
            true = p[np.arange(len(labels)), labels]
            losses.append(float(-np.log(np.clip(true, 1e-12, None)).mean()))
            accuracies.append(float((p.argmax(1) == labels).mean()))
        return np.asarray(losses), np.asarray(accuracies)
