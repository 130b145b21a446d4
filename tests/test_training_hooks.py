"""The training pieces the faithful models need: named recipe presets (config and CLI), the
engine's `criterion` hook, `max_steps` and the optimiser's `eps`; and a one-epoch run of each
faithful model through the runner on a tiny synthetic set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from merkit.errors import ConfigError
from merkit.models import InputSpec, Preset, register_model
from merkit.models import registry as registry_module
from merkit.synthetic.dataset import SyntheticConfig, generate_casme2_like
from merkit.training.config import ExperimentConfig, build_experiment
from merkit.training.engine import fit, fit_predict, plan_members
from merkit.training.recipe import Recipe, default_recipe, recipe_presets
from merkit.training.runner import run_experiment
from merkit.training.trainer import BucketTrainer


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_MODELS", dict(registry_module._MODELS))


def _data(n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 2, 4, 4), dtype=np.float32), np.arange(n) % 3


class Counting(nn.Module):
    """A linear model that counts its training forwards and may bring its own criterion."""

    def __init__(self, num_classes: int, in_chans: int, scale: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_chans * 16, num_classes)
        self.scale, self.forwards, self.seen = scale, 0, []
        self._logits: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x.flatten(1))
        if self.training:
            self.forwards += 1
            self._logits = logits
        return logits

    def criterion(self, target: torch.Tensor) -> torch.Tensor:
        self.seen.append(target)
        return self.scale * -(target * self._logits.log_softmax(-1)).sum(-1)


@pytest.fixture
def counting(scratch_registry: None) -> None:
    @register_model(
        "counting",
        summary="a linear layer with its own criterion",
        input=InputSpec("maps", 2, (4, 4)),
        presets={"default": Preset()},
        hooks=("criterion",),
    )
    def counting(num_classes: int = 3, in_chans: int = 2, scale: float = 1.0) -> nn.Module:
        return Counting(num_classes, in_chans, scale)


def _recipe(**kw: object) -> Recipe:
    base = {"model": "counting", "epochs": 3, "batch_size": 8, "weight_decay": 0.0}
    base["augment"] = {"hflip": False, "max_shift": 0}
    return Recipe.from_dict({**base, **kw})


def test_the_criterion_hook_replaces_the_cross_entropy(counting: None) -> None:
    x, y = _data()
    trainer = BucketTrainer(
        _recipe(), plan_members(_recipe(), [(np.arange(24), np.arange(0))], 0, None), x, y, 3
    )
    idx = torch.arange(8)[None]
    batch = trainer._inputs(idx, idx, [torch.Generator().manual_seed(0)])
    loss, per_copy, _ = trainer._loss(idx, *batch)
    seen = trainer.model.seen[-1]
    assert seen.shape == (8, 3) and torch.equal(seen, torch.eye(3)[y[:8]])  # one-hot, (B, K)
    logits = trainer.model.linear(torch.from_numpy(x[:8]).flatten(1))
    ce = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[:8]))
    torch.testing.assert_close(loss, ce)  # scale 1: the engine's own mean cross-entropy
    trainer.model.scale = 3.0
    torch.testing.assert_close(trainer._loss(idx, *batch)[0], 3 * ce)


def test_max_steps_ends_the_schedule_mid_epoch(counting: None) -> None:
    x, y = _data()
    model = fit(_recipe(epochs=50, max_steps=5), x, y, 3)  # 3 steps an epoch
    assert model.forwards == 5
    folds = [(np.arange(12, 24), np.arange(12))]
    (result,) = fit_predict(_recipe(epochs=50, max_steps=5), x, y, folds, 3, output="history")
    assert len(result.history["train_loss"]) == 3  # 2 steps, 2 steps, 1 step
    calls = []
    fit(_recipe(epochs=4, max_steps=100), x, y, 3, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (4, 4)  # epochs still bound it; the progress total is right
    with pytest.raises(ConfigError, match="max_steps must be >= 0"):
        ExperimentConfig.from_dict({"data": {"root": "x"}, "recipe": {"max_steps": -1}})


def test_the_optimiser_takes_the_recipe_eps(counting: None) -> None:
    x, y = _data()
    jobs = plan_members(_recipe(), [(np.arange(24), np.arange(0))], 0, None)
    for optimizer in ("adam", "adamw"):
        recipe = _recipe(optimizer=optimizer, eps=1e-7)
        opt = BucketTrainer(recipe, jobs, x, y, 3)._optimizer()
        assert {group["eps"] for group in opt.param_groups} == {1e-7}


def test_presets_resolve_by_name_and_unknown_ones_are_refused() -> None:
    assert recipe_presets("cabm") == ["default"]
    assert recipe_presets("icip24")[:2] == ["default", "paper"] and "paper" in recipe_presets("mol")
    assert default_recipe("cabm") == default_recipe("cabm", "default")
    with pytest.raises(
        ConfigError, match="model 'cabm' has no recipe preset 'paper'; its presets: default"
    ):
        default_recipe("cabm", "paper")
    recipe = default_recipe("mol", "paper")
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    config = build_experiment(
        None, {"data.root": "x", "recipe.model": "mol", "recipe.preset": "paper"}
    )
    assert config.recipe.max_steps == 1001 and config.prepare.size == 144
    again = ExperimentConfig.from_dict(config.to_dict())  # a run folder's config resumes as is
    assert again.recipe == config.recipe and again.prepare == config.prepare
    mine = build_experiment(
        None,
        {"data.root": "x", "recipe.model": "mol", "recipe.preset": "paper", "recipe.epochs": 2},
    )
    assert mine.recipe.epochs == 2 and mine.recipe.lr == 1e-4  # keys override the preset


def test_cli_train_takes_a_named_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helpers import run

    code, _, err = run(
        [
            "train",
            "--data",
            "casme2",
            "--root",
            str(tmp_path),
            "--model",
            "cabm",
            "--recipe",
            "paper",
            "--out",
            str(tmp_path / "r"),
        ],
        capsys,
    )
    assert code == 2 and "has no recipe preset 'paper'" in err


@pytest.mark.parametrize(
    ("model", "recipe"),
    [
        (
            "icip24",
            {
                "model_kwargs": {
                    "frame_channels": 1,
                    "size": 32,
                    "filters": 4,
                    "reduction": 2,
                    "hidden": 8,
                }
            },
        ),
        ("mol", {"model_kwargs": {"crop": 32, "dim": 32, "flow_width": 0.0625}}),
    ],
)
def test_one_epoch_through_the_runner_on_synthetic_clips(
    model: str, recipe: dict, tmp_path: Path
) -> None:
    """The whole path: synthetic CASME II layout -> sequences (MOL: TV-L1 + dlib targets packed)
    -> LOSO, one epoch -> a run folder."""
    config = dataclasses.replace(
        SyntheticConfig(), n_subjects=2, clips_per_subject=3, size=48, n_frames=10
    )
    root = generate_casme2_like(tmp_path / "data", config)
    size = {"icip24": 32, "mol": 36}[model]
    experiment = ExperimentConfig.from_dict(
        {
            "data": {"name": "casme2", "root": str(root), "taxonomy": "5class"},
            "prepare": {"size": size, "frames": 4},
            "recipe": {"model": model, "epochs": 1, "batch_size": 2, **recipe},
        }
    )
    result = run_experiment(experiment, tmp_path / "run", progress=False)
    assert result.n_samples == 6 and result.folds_computed == 2
    assert (tmp_path / "run" / "predictions.csv").is_file()
