"""Same config and seed, same predictions to the bit, for every model that runs on flow maps
(or on their facial-region mosaics); and the run folder says how that was made sure of."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from flowdata import write_flow_dataset
from merkit.models import get_descriptor, list_models
from merkit.training.config import ExperimentConfig
from merkit.training.engine import fit_predict
from merkit.training.recipe import AugmentConfig, Recipe
from merkit.training.runner import run_experiment

FLOW_MODELS = [
    m
    for m in list_models()
    if get_descriptor(m).input.kind in ("maps", "regions")
    and get_descriptor(m).training == "gradient"  # the ensemble repeats its members' results
]
# Fitted in closed form (features + SVM): repeat-checked in test_classic.py.
CLOSED_FORM = {m for m in list_models() if get_descriptor(m).closed_form}


class Recording:
    """The real engine, keeping every array it returns (full float64, not the CSV's rounding)."""

    def __init__(self) -> None:
        self.outputs: list[np.ndarray] = []

    def fit_predict(self, *args, output="probs", **kwargs) -> list[np.ndarray]:
        probs = fit_predict(*args, **kwargs)  # bare probabilities, whatever the runner asks
        self.outputs.extend(probs)
        return probs


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def flow_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("megc") / "megc"
    return write_flow_dataset(root, per_subject=3, apex_faces=True)


def test_flow_models_are_known() -> None:
    assert {"cabm", "ststnet", "offapexnet", "htnet"} <= set(FLOW_MODELS)


@pytest.mark.parametrize("model", FLOW_MODELS)
def test_same_seed_gives_bit_identical_predictions(model: str, flow_root: Path, tmp_path: Path):
    config = ExperimentConfig.from_dict(
        {
            "data": {"name": "megc2019-flow", "root": str(flow_root)},
            "recipe": {"model": model, "epochs": 2, "batch_size": 8, "folds_per_batch": 3},
            "seeds": [3],
        }
    )
    runs = []
    for name in ("a", "b"):
        engine = Recording()
        run_experiment(config, tmp_path / name, engine=engine, progress=False)
        runs.append(engine.outputs)

    assert len(runs[0]) == 6
    for a, b in zip(*runs, strict=True):
        assert np.array_equal(a, b)
    for path in sorted((tmp_path / "a").rglob("*.csv")):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
    meta = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert meta["determinism"] == {
        "device": "cpu, fp32",
        "executor": "local",
        "workers": 1,
        "torch_threads_per_worker": 1,
        "torch_deterministic_algorithms": True,
        "seeds": [3],
        "job_seeds": "engine.job_seed(seed, member, test indices) per (fold, member) job",
    }


def test_another_seed_changes_the_predictions(flow_root: Path, tmp_path: Path) -> None:
    """The check above can fail: the seed does reach the engine."""
    outputs = []
    for seed in (0, 1):
        config = ExperimentConfig.from_dict(
            {
                "data": {"name": "megc2019-flow", "root": str(flow_root)},
                "recipe": {"model": "cabm", "epochs": 1, "batch_size": 8},
                "seeds": [seed],
            }
        )
        engine = Recording()
        run_experiment(config, tmp_path / str(seed), engine=engine, progress=False)
        outputs.append(engine.outputs)
    assert not np.array_equal(outputs[0][0], outputs[1][0])


# Inputs and small configs (dropout on, so its masks are part of what must repeat) for the models
# that do not take flow maps: frame sequences (MOL: the packed gray/flow/landmark layout).
SEQUENCE_CASES = {
    "c3dgru": ((6, 32, 32), {"widths": (4, 8), "pool_grid": 2, "hidden": 16, "dropout": 0.3}),
    "icip24": (
        (6, 32, 32),
        {
            "frame_channels": 1,
            "size": 32,
            "filters": 4,
            "reduction": 2,
            "hidden": 8,
            "dropout": 0.3,
        },
    ),
    "mol": ((16, 36, 36), {"crop": 32, "dim": 32, "flow_width": 0.0625, "dropout": 0.3}),
}


# Probability averages of registered models: repeat-checked here as a whole.
ENSEMBLES = {m for m in list_models() if get_descriptor(m).training == "average"}


def test_every_model_has_a_determinism_check() -> None:
    assert set(list_models()) == set(FLOW_MODELS) | set(SEQUENCE_CASES) | CLOSED_FORM | ENSEMBLES


@pytest.mark.parametrize("model", sorted(ENSEMBLES))
def test_ensembles_repeat_to_the_bit(model: str) -> None:
    from merkit.training.base import engine_for
    from merkit.training.recipe import default_recipe

    rng = np.random.default_rng(0)
    x, y = rng.random((12, 3, 28, 28), dtype=np.float32), np.arange(12) % 3
    folds = [(np.arange(6, 12), np.arange(6)), (np.arange(6), np.arange(6, 12))]
    recipe = default_recipe(model)
    runs = [engine_for(recipe).fit_predict(recipe, x, y, folds, 3, seed=1) for _ in range(2)]
    for a, b in zip(*runs, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("model", sorted(SEQUENCE_CASES))
def test_sequence_models_repeat_to_the_bit(model: str) -> None:
    """Same seed: bit-identical probabilities and curves; another seed: different ones."""
    shape, kwargs = SEQUENCE_CASES[model]
    rng = np.random.default_rng(0)
    x = rng.random((12, *shape), dtype=np.float32)
    y = np.arange(12) % 3
    folds = [(np.arange(6, 12), np.arange(6)), (np.arange(6), np.arange(6, 12))]
    recipe = Recipe(
        model=model,
        model_kwargs=kwargs,
        epochs=2,
        batch_size=4,
        augment=AugmentConfig(hflip=False, max_shift=2),
    )
    first, again, other = (
        fit_predict(recipe, x, y, folds, 3, seed, output="history") for seed in (5, 5, 6)
    )
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.probs, b.probs) and a.history == b.history
    assert not np.array_equal(first[0].probs, other[0].probs)
