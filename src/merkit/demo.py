"""`merkit demo`: the whole pipeline on synthetic data, in a few minutes on a laptop CPU.

Synthetic micro-expressions are written in the real CASME II cropped layout, read back by the
real CASME II loader, turned into onset->apex flow maps by the real preparation stage (with its
cache), and evaluated with leave-one-subject-out by the default model's recipe (`recommended`).
Nothing here is special-cased for the demo except the data source. Then the same recipe is
fitted once on all clips (`model.pt`, what `merkit fit` writes), and a few clips of subjects it
never saw are written as videos (`clips/`), so `merkit serve --runs merkit-demo` has a model and
clips to try.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from merkit.data.registry import load_dataset
from merkit.errors import MerkitError
from merkit.inference.checkpoint import load_checkpoint
from merkit.synthetic.dataset import SyntheticConfig, generate_casme2_like, write_synthetic_video
from merkit.training.config import ExperimentConfig, build_experiment
from merkit.training.fit import fit_final
from merkit.training.recipe import DEFAULT_MODEL
from merkit.training.runner import RunProgress, RunResult, run_experiment

MODEL_FILE = "model.pt"
CLIPS_DIR = "clips"
# Clips to try the model on: a movement inside neutral frames, as a video shows it (0-based).
CLIP_FRAMES, CLIP_ONSET, CLIP_APEX, CLIP_OFFSET = 100, 30, 45, 70


@dataclass
class DemoConfig:
    out: Path = Path("merkit-demo")
    n_subjects: int = 12
    clips_per_subject: int = 10
    seed: int = 0
    model: str = DEFAULT_MODEL
    flow: str | None = None  # None: preparation's default (TV-L1, as the published maps)
    epochs: int | None = None  # None: the model's shipped recipe
    workers: int = 1


def demo_experiment(config: DemoConfig, data_root: Path) -> ExperimentConfig:
    """The experiment the demo runs: LOSO, 5-class CASME II taxonomy, the model's recipe."""
    return build_experiment(
        overrides={
            "data.name": "casme2",
            "data.root": str(data_root),
            "data.taxonomy": "5class",
            "prepare.flow": config.flow,
            "prepare.aligned": True,
            "protocol.name": "loso",
            "recipe.model": config.model,
            "recipe.epochs": config.epochs,
            "seeds": [config.seed],
            "workers": config.workers,
            "cache_dir": str(config.out / "cache"),
        }
    )


@dataclass
class DemoResult:
    """The LOSO run, the final model fitted on every clip, and the clips written to try it on."""

    run: RunResult
    model: Path
    clips: list[Path]


def fit_demo_model(experiment: ExperimentConfig, out: Path, progress: bool = True) -> Path:
    """The experiment's recipe fitted on all its clips, with its preparation (and cache); an
    existing `out` fitted with the same model, epochs, seed, preparation and data is kept."""
    data, recipe, seed = experiment.data, experiment.recipe, experiment.seeds[0]
    fingerprint = load_dataset(data.name, data.root, taxonomy=data.taxonomy).fingerprint()
    if out.is_file():
        try:
            meta = load_checkpoint(out)[1]
        except MerkitError:
            meta = None
        if meta is not None and (
            meta.model,
            meta.recipe.get("epochs"),
            meta.seed,
            meta.prepare_config,
            meta.data_fingerprint,
        ) == (recipe.model, recipe.epochs, seed, experiment.prepare, fingerprint):
            return out
    with RunProgress(progress, 1).running() as bar:
        fit_final(experiment, out=out, progress=progress, on_epoch=bar.epoch)
        bar.folds_done(1)
    return out


def write_demo_clips(folder: Path, synthetic: SyntheticConfig) -> list[Path]:
    """One video per class, each of a subject outside the dataset (kept when already there)."""
    clips = []
    for i, emotion in enumerate(synthetic.classes):
        path = folder / f"{emotion}.mp4"
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            write_synthetic_video(path, emotion, subject=synthetic.n_subjects + i,
                                  n_frames=CLIP_FRAMES, onset=CLIP_ONSET, apex=CLIP_APEX,
                                  offset=CLIP_OFFSET, config=synthetic)  # fmt: skip
        clips.append(path)
    return clips


def run_demo(config: DemoConfig, progress: bool = True) -> DemoResult:
    """Generate (or reuse) the synthetic dataset, run and report the experiment, then fit the
    final model and write the clips to try it on."""
    data_root = config.out / "data"
    synthetic = SyntheticConfig(
        n_subjects=config.n_subjects, clips_per_subject=config.clips_per_subject, seed=config.seed
    )
    generate_casme2_like(data_root, synthetic)
    experiment = demo_experiment(config, data_root)
    run = run_experiment(experiment, config.out / f"{config.model}-loso", progress=progress)
    model = fit_demo_model(experiment, config.out / MODEL_FILE, progress)
    return DemoResult(run, model, write_demo_clips(config.out / CLIPS_DIR, synthetic))
