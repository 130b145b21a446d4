"""`merkit demo`: the whole pipeline on synthetic data, in a few minutes on a laptop CPU.

Synthetic micro-expressions are written in the real CASME II cropped layout, read back by the
real CASME II loader, turned into onset->apex flow maps by the real preparation stage (with its
cache), and evaluated with leave-one-subject-out by the default CABM-FMER recipe. Nothing here
is special-cased for the demo except the data source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from merkit.data.synthetic import SyntheticConfig, generate_casme2_like
from merkit.training.config import ExperimentConfig
from merkit.training.recipe import default_recipe
from merkit.training.runner import RunResult, run_experiment


@dataclass
class DemoConfig:
    out: Path = Path("merkit-demo")
    n_subjects: int = 12
    clips_per_subject: int = 10
    seed: int = 0
    model: str = "cabm"
    flow: str = "farneback"  # TV-L1 is the research default; Farneback keeps the demo quick
    epochs: int | None = None  # None: the model's shipped recipe
    workers: int = 1


def demo_experiment(config: DemoConfig, data_root: Path) -> ExperimentConfig:
    """The experiment the demo runs: LOSO, 5-class CASME II taxonomy, default recipe."""
    recipe = default_recipe(config.model).to_dict()
    if config.epochs is not None:
        recipe["epochs"] = config.epochs
    return ExperimentConfig.from_dict(
        {
            "data": {"name": "casme2", "root": str(data_root), "taxonomy": "5class"},
            "prepare": {"flow": config.flow, "aligned": True},
            "protocol": {"name": "loso"},
            "recipe": recipe,
            "seeds": [config.seed],
            "workers": config.workers,
            "cache_dir": str(config.out / "cache"),
        },
        where="demo",
    )


def run_demo(config: DemoConfig, progress: bool = True) -> RunResult:
    """Generate (or reuse) the synthetic dataset, then run and report the experiment."""
    data_root = config.out / "data"
    synthetic = SyntheticConfig(
        n_subjects=config.n_subjects, clips_per_subject=config.clips_per_subject, seed=config.seed
    )
    generate_casme2_like(data_root, synthetic)
    return run_experiment(demo_experiment(config, data_root), config.out / "run", progress=progress)
