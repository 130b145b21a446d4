"""Training engine: augmentation, determinism, batched folds, no leakage, hooks, final models."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal

import numpy as np
import pytest
import torch
from torch import nn

from merkit import workers
from merkit.errors import ConfigError
from merkit.models import InputSpec, Preset, register_model
from merkit.models import registry as registry_module
from merkit.models.cabm import center_motion
from merkit.training import engine, regularisers, trainer
from merkit.training.augment import augment, hflip_flow
from merkit.training.engine import ProbabilityAverage, fit, fit_predict
from merkit.training.recipe import AugmentConfig, Recipe, default_recipe

TINY = {"dim": 8, "depth": 1, "kernel": 3, "patch": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n: int = 48, subjects: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps whose class shows as a bright band, from `subjects` subjects of n/subjects samples."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = rng.random((n, 3, 28, 28), dtype=np.float32) * 0.5
    for i, label in enumerate(y):
        x[i, :, 4 + 8 * label : 10 + 8 * label] += 0.5
    groups = np.repeat([f"s{i}" for i in range(subjects)], n // subjects)
    return x, y, groups


def _loso(groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    idx = np.arange(len(groups))
    return [(idx[groups != s], idx[groups == s]) for s in dict.fromkeys(groups.tolist())]


def _recipe(**kw: object) -> Recipe:
    base = {"model": "cabm", "model_kwargs": TINY, "epochs": 2, "batch_size": 16, "lr": 3e-3}
    return Recipe.from_dict({**base, **kw})


def test_hflip_mirrors_the_map_and_reverses_u() -> None:
    x = torch.rand(2, 3, 5, 6)
    flipped = hflip_flow(x)  # min-max scaled maps: reversed u is 1 - u
    torch.testing.assert_close(flipped[:, 0], 1 - x[:, 0].flip(-1))
    torch.testing.assert_close(flipped[:, 1:], x[:, 1:].flip(-1))
    signed = hflip_flow(x - 0.5, u_scaling="signed")
    torch.testing.assert_close(signed[:, 0], -(x[:, 0] - 0.5).flip(-1))
    torch.testing.assert_close(hflip_flow(hflip_flow(x)), x)
    with pytest.raises(ValueError, match="u_scaling"):
        hflip_flow(x, u_scaling="raw")


def test_flip_of_a_scaled_map_is_the_flip_of_the_centered_motion() -> None:
    x = torch.rand(3, 3, 7, 7)  # odd count: the median is a sample, exactly
    lhs = center_motion(hflip_flow(x), 3)
    rhs = center_motion(x, 3).flip(-1)
    torch.testing.assert_close(lhs[:, 0], -rhs[:, 0])
    torch.testing.assert_close(lhs[:, 1:], rhs[:, 1:])


def test_augment_flips_shifts_and_is_seeded() -> None:
    x = torch.rand(64, 3, 12, 12)
    flip_only = AugmentConfig(hflip=True, max_shift=0)
    out = augment(x, flip_only, torch.Generator().manual_seed(0))
    flipped = (out != x).flatten(1).any(1)
    assert 10 < int(flipped.sum()) < 54  # about half
    torch.testing.assert_close(out[flipped], hflip_flow(x[flipped]))
    shift_only = AugmentConfig(hflip=False, max_shift=2)
    a = augment(x, shift_only, torch.Generator().manual_seed(1))
    b = augment(x, shift_only, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    # an integer shift moves content exactly: some sample matches x shifted by (dx, dy)
    one = augment(x[:1], AugmentConfig(hflip=False, max_shift=0), torch.Generator())
    torch.testing.assert_close(one, x[:1])


def test_zoom_contrast_and_erase_keep_the_no_motion_level() -> None:
    x = torch.rand(200, 3, 13, 13)
    level = x.flatten(2).median(dim=2).values
    gen = torch.Generator().manual_seed(0)
    contrast = augment(x, AugmentConfig(hflip=False, max_shift=0, contrast=1.0), gen)
    assert float(contrast.min()) >= 0 and float(contrast.max()) <= 1  # still a min-max map
    torch.testing.assert_close(contrast.flatten(2).median(dim=2).values, level)
    spread = (contrast - level[..., None, None]).abs().flatten(2).mean(2)
    ratio = spread / (x - level[..., None, None]).abs().flatten(2).mean(2)
    assert float(ratio.min()) < 0.7 and float(ratio.max()) > 1.3  # gains both ways
    erased = augment(x, AugmentConfig(hflip=False, max_shift=0, erase=0.5), gen)
    reset = erased == level[..., None, None]
    hit = reset.flatten(1).sum(1) > 3 * 2  # a patch is at least 2x2 pixels in every channel
    assert 60 < int(hit.sum()) < 140  # about half the maps
    torch.testing.assert_close(erased[~reset], x[~reset])
    zoomed = augment(x[:8], AugmentConfig(hflip=False, max_shift=0, max_scale=0.3), gen)
    assert zoomed.shape == x[:8].shape and not torch.equal(zoomed, x[:8])
    # options left at 0 draw nothing: the default still draws only its flips, shifts and angles
    a = torch.Generator().manual_seed(5)
    b = torch.Generator().manual_seed(5)
    augment(x, AugmentConfig(), a)
    torch.rand(200, generator=b), torch.randint(-2, 3, (200, 2), generator=b)
    torch.rand(200, generator=b)
    assert torch.equal(a.get_state(), b.get_state())


def test_fit_predict_is_deterministic_and_returns_probabilities() -> None:
    x, y, groups = _data()
    folds = _loso(groups)
    recipe = _recipe(label_smoothing=0.1, class_weighted=True, augment={"mixup": 0.4})
    first = fit_predict(recipe, x, y, folds, 3, seed=3)
    second = fit_predict(recipe, x, y, folds, 3, seed=3)
    other = fit_predict(recipe, x, y, folds, 3, seed=4)
    assert len(first) == len(folds)
    for a, b, (_, test) in zip(first, second, folds, strict=True):
        assert a.shape == (len(test), 3)
        np.testing.assert_allclose(a.sum(1), 1, rtol=1e-5)
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.concatenate(first), np.concatenate(other))


def test_batched_folds_equal_folds_trained_alone() -> None:
    x, y, groups = _data()
    folds = _loso(groups)
    recipe = _recipe(epochs=3)
    together = fit_predict(recipe, x, y, folds, 3, seed=0)
    alone = fit_predict(recipe, x, y, folds[2:3], 3, seed=0)
    np.testing.assert_allclose(together[2], alone[0], atol=2e-4)
    single = fit_predict(_recipe(epochs=3, folds_per_batch=1), x, y, folds, 3, seed=0)
    for a, b in zip(together, single, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-4)


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [("cabm", {**TINY, "dropout": 0.5}), ("ststnet", {}), ("offapexnet", {"hidden": 32})],
)
def test_dropout_does_not_tie_a_fold_to_its_batch_companions(model: str, kwargs: dict) -> None:
    """Each copy draws its own dropout masks: a fold trained in a batch equals it trained alone."""
    x, y, groups = _data()
    folds = _loso(groups)[:3]
    recipe = _recipe(model=model, model_kwargs=kwargs, epochs=2, folds_per_batch=3)
    together = fit_predict(recipe, x, y, folds, 3, seed=0)
    alone = fit_predict(_recipe(model=model, model_kwargs=kwargs, epochs=2), x, y, folds[1:2], 3)
    np.testing.assert_allclose(together[1], alone[0], atol=2e-4)
    other_seed = fit_predict(recipe, x, y, folds[1:2], 3, seed=1)
    assert not np.allclose(other_seed[0], alone[0], atol=2e-4)  # the comparison can fail


@pytest.mark.slow
def test_worker_processes_give_the_same_probabilities() -> None:
    x, y, groups = _data()
    folds = _loso(groups)
    calls: list[tuple[int, int]] = []
    serial = fit_predict(_recipe(), x, y, folds, 3, seed=1)
    parallel = fit_predict(
        _recipe(), x, y, folds, 3, seed=1, workers=2, progress=lambda d, t: calls.append((d, t))
    )
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-4)
    assert calls[-1] == (2 * len(folds), 2 * len(folds))


def test_no_fold_ever_trains_on_its_test_or_validation_samples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[tuple[np.ndarray, set[int]]] = []  # per batch stream: its pool, what it gave
    original = trainer.BatchStream.next

    def spy(self: trainer.BatchStream) -> torch.Tensor:
        batch = original(self)
        if not drawn or drawn[-1][0] is not self.indices:
            drawn.append((self.indices, set()))
        drawn[-1][1].update(batch.tolist())
        return batch

    monkeypatch.setattr(trainer.BatchStream, "next", spy)
    x, y, groups = _data()
    folds = _loso(groups)
    recipe = _recipe(val_subjects=2, seed_members=2, folds_per_batch=1)
    jobs = engine.plan_members(recipe, folds, 0, groups)
    fit_predict(recipe, x, y, folds, 3, seed=0, groups=groups)
    assert len(drawn) == len(jobs) == 2 * len(folds)
    for job, (pool, used) in zip(jobs, drawn, strict=True):
        np.testing.assert_array_equal(pool.numpy(), job.train)
        assert used == set(job.train.tolist())  # every training sample, and nothing else
        assert not used & set(job.test.tolist())
        assert not used & set(job.val.tolist())
        val_subjects = set(groups[job.val].tolist())
        assert len(val_subjects) == 2
        assert not val_subjects & set(groups[job.test].tolist())


def test_unshuffled_epochs_repeat_the_given_order() -> None:
    """HTNet's loader: each epoch the same batches, the last one filled up from the start."""
    generator = torch.Generator().manual_seed(0)
    stream = trainer.BatchStream(np.arange(10, 15), 4, generator, shuffle=False)
    batches = [stream.next().tolist() for _ in range(4)]
    assert batches == [[10, 11, 12, 13], [14, 10, 11, 12]] * 2
    shuffled = trainer.BatchStream(np.arange(10, 15), 4, generator)
    assert [shuffled.next().tolist() for _ in range(4)] != batches


def test_validation_needs_groups_and_enough_subjects() -> None:
    x, y, groups = _data()
    with pytest.raises(ConfigError, match="groups"):
        fit_predict(_recipe(val_subjects=1), x, y, _loso(groups), 3)
    with pytest.raises(ConfigError, match="too few"):
        fit_predict(_recipe(val_subjects=5), x, y, _loso(groups), 3, groups=groups)
    leaky = [(np.arange(10), np.arange(5, 15))]
    with pytest.raises(ValueError, match="same sample"):  # the runner refuses such a protocol
        fit_predict(_recipe(), x, y, leaky, 3)


def test_epoch_curves_and_progress() -> None:
    x, y, groups = _data()
    folds = _loso(groups)[:2]
    calls: list[tuple[int, int]] = []
    curves = fit_predict(
        _recipe(epochs=3),
        x,
        y,
        folds,
        3,
        progress=lambda d, t: calls.append((d, t)),
        output="epochs",
    )
    assert curves[0].shape == (3, len(folds[0][1]), 3)
    final = fit_predict(_recipe(epochs=3), x, y, folds, 3)
    np.testing.assert_allclose(curves[1][-1], final[1], atol=1e-6)
    assert calls[-1] == (6, 6) and all(d <= t for d, t in calls)


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_MODELS", dict(registry_module._MODELS))


def test_aux_loss_hook_is_added_to_the_training_loss(scratch_registry: None) -> None:
    calls = []

    class Shrunk(nn.Module):
        """A linear model whose auxiliary loss pulls its weights to zero."""

        def __init__(self, num_classes: int, in_chans: int, strength: float) -> None:
            super().__init__()
            self.linear = nn.Linear(in_chans * 28 * 28, num_classes)
            self.strength = strength

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.flatten(1))

        def aux_loss(self) -> torch.Tensor | None:
            calls.append(1)
            return self.strength * self.linear.weight.abs().sum() if self.strength else None

    @register_model(
        "shrunk",
        summary="a linear layer with an L1 auxiliary loss",
        input=InputSpec("maps", 3, (28, 28)),
        presets={"default": Preset()},
        hooks=("aux_loss",),
    )
    def shrunk(num_classes: int = 3, in_chans: int = 3, strength: float = 0.0) -> nn.Module:
        return Shrunk(num_classes, in_chans, strength)

    x, y, _ = _data()
    plain = fit(_recipe(model="shrunk", model_kwargs={}, weight_decay=0), x, y, 3)
    n_plain = len(calls)
    shrunk_model = fit(
        _recipe(model="shrunk", model_kwargs={"strength": 1.0}, weight_decay=0), x, y, 3
    )
    assert n_plain == 2 * 3 and len(calls) == 2 * n_plain  # once per training step
    assert shrunk_model.linear.weight.abs().mean() < 0.3 * plain.linear.weight.abs().mean()


def test_fit_returns_an_ordinary_model_or_an_averaging_ensemble() -> None:
    x, y, _ = _data()
    model = fit(_recipe(), x, y, 3)
    assert type(model).__name__ == "CABMFMER" and model.groups == 1 and not model.training
    assert model(torch.from_numpy(x[:4])).shape == (4, 3)
    ensemble = fit(_recipe(seed_members=3), x, y, 3)
    assert isinstance(ensemble, ProbabilityAverage) and len(ensemble.members) == 3
    probs = ensemble(torch.from_numpy(x[:4])).softmax(-1)
    np.testing.assert_allclose(probs.sum(-1).detach().numpy(), 1, rtol=1e-5)
    with pytest.raises(ConfigError, match="val_subjects"):
        fit(_recipe(val_subjects=1), x, y, 3)


@pytest.mark.parametrize("name", ["cabm", "ststnet", "offapexnet", "htnet"])
def test_default_recipes_name_their_model_and_round_trip(name: str) -> None:
    recipe = default_recipe(name)
    assert recipe.model == name
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_weight_average_follows_the_weights_with_a_ramped_decay() -> None:
    layer = nn.Linear(2, 1)
    average = regularisers.WeightAverage(layer, decay=0.9)
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(1.0)
    average.update()  # decay min(0.9, 2/11)
    expected = start + (1 - 2 / 11) * 1.0
    assert torch.allclose(average.state["weight"], expected)
    with average.applied():
        assert torch.allclose(layer.weight, expected)
    assert torch.allclose(layer.weight, start + 1.0)  # trained weights back after evaluation


def test_ema_recipe_evaluates_the_averaged_model() -> None:
    x, y, groups = _data()
    folds = _loso(groups)[:2]
    plain = fit_predict(_recipe(epochs=3), x, y, folds, 3, seed=0)
    averaged = fit_predict(_recipe(epochs=3, ema=0.9), x, y, folds, 3, seed=0)
    again = fit_predict(_recipe(epochs=3, ema=0.9), x, y, folds, 3, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(averaged, again, strict=True))
    assert not np.allclose(plain[0], averaged[0])
    assert np.allclose(np.concatenate(averaged).sum(1), 1, atol=1e-5)


def test_sharpness_aware_step_is_per_copy_and_changes_training() -> None:
    """SAM normalises each copy's gradient alone: a fold in a batch equals it trained alone."""
    x, y, groups = _data()
    folds = _loso(groups)[:3]
    recipe = _recipe(epochs=2, sam=0.1, folds_per_batch=3)
    together = fit_predict(recipe, x, y, folds, 3, seed=0)
    alone = fit_predict(_recipe(epochs=2, sam=0.1), x, y, folds[1:2], 3, seed=0)
    np.testing.assert_allclose(together[1], alone[0], atol=2e-4)
    plain = fit_predict(_recipe(epochs=2), x, y, folds[1:2], 3, seed=0)
    assert not np.allclose(plain[0], alone[0], atol=2e-4)  # the comparison can fail


def test_perturbed_pass_leaves_batchnorm_running_statistics_alone() -> None:
    norm = nn.BatchNorm1d(2)
    before = norm.running_mean.clone()
    with regularisers.running_stats_frozen(norm):
        out = norm(torch.tensor([[1.0, 5.0], [3.0, 7.0]]))
    assert torch.equal(norm.running_mean, before) and norm.momentum == 0.1
    assert torch.allclose(out.mean(0), torch.zeros(2))  # still normalised by the batch
    norm(torch.tensor([[1.0, 5.0], [3.0, 7.0]]))
    assert not torch.equal(norm.running_mean, before)


def test_pool_worker_ignores_ctrl_c_and_stops_at_the_next_epoch_when_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The driver decides: Ctrl-C does not kill a worker mid-write; the stop event ends it."""
    context = multiprocessing.get_context("spawn")
    queue, stop = context.SimpleQueue(), context.Event()
    previous = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(workers, "_exit_with_parent", lambda parent: None)
    monkeypatch.setattr(workers, "_messages", None)  # set by the worker start, then undone
    monkeypatch.setattr(workers, "_stop", None)
    try:
        no_stage = pickle.dumps((None, ()))
        workers._start_worker(stop, queue, os.getpid(), torch.get_num_threads(), no_stage)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        counter = engine._ReportingCounter(None, 0)
        counter.add(1)
        assert queue.get() == 1
        stop.set()
        with pytest.raises(workers.Stopped):
            counter.add(1)
    finally:
        signal.signal(signal.SIGINT, previous)
