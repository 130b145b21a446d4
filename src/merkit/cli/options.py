"""Command-line options that several commands take, declared once: one name, one meaning.

`--cache` is always the preprocessing cache folder, `--workers` the processes preparing clips
(or predicting inputs), `--quiet` turns progress display off, `--out` is where the command's
own result goes (a run folder, an audit folder, a checkpoint, a JSON file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from merkit.preprocess.config import APEX_POLICIES, SPOTTING_METHODS

Data = Annotated[str | None, typer.Option(help="Dataset name (see `merkit datasets`).")]
Root = Annotated[Path | None, typer.Option(help="The dataset's folder.")]
Model = Annotated[
    str | None, typer.Option(help="Model (see `merkit models`); its shipped recipe is used.")
]
RecipePreset = Annotated[
    str | None,
    typer.Option("--recipe", help="Named recipe of the model instead of its default, e.g. paper."),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="YAML experiment config; the options here override it."),
]
Epochs = Annotated[int | None, typer.Option(help="Training epochs (overrides the recipe).")]
Taxonomy = Annotated[
    str | None,
    typer.Option(help="Label taxonomy: all, 5class or 3class (default: the loader's)."),
]
Flow = Annotated[
    str | None,
    typer.Option(help="Optical flow: tvl1 (the default, as the published maps), farneback or dis."),
]
Spotting = Annotated[
    str | None,
    typer.Option(help=f"Apex spotting where no apex is given: {', '.join(SPOTTING_METHODS)}."),
]
Fps = Annotated[
    float | None,
    typer.Option(
        help="Frame rate of the clips (frames per second), over what the video or dataset "
        "states: spotting sets every time span from it."
    ),
]
ApexPolicy = Annotated[
    str | None,
    typer.Option(
        help=f"Which apex preparation uses ({', '.join(APEX_POLICIES)}): annotated spots only "
        "where none is given; spot always spots it, as predict does, so that a model is trained "
        "on inputs made like the ones it will be shown."
    ),
]
Cache = Annotated[
    Path | None,
    typer.Option("--cache", help="Preprocessing cache folder: prepared clips are kept and reused."),
]
Workers = Annotated[int | None, typer.Option(help="Processes preparing clips.")]
Aligned = Annotated[
    bool, typer.Option(help="Frames are already aligned face crops: skip face detection.")
]
Overwrite = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace a folder that holds other work (or other files)."),
]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress display.")]
JsonFile = Annotated[
    Path | None,
    typer.Option(
        "--json",
        help="Also write the whole result as JSON to this file ('-': standard output, instead "
        "of the table).",
    ),
]
Device = Annotated[
    str | None,
    typer.Option(
        help="Where models run: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda, "
        "cuda:N or mps."
    ),
]
Precision = Annotated[
    str | None,
    typer.Option(
        help="fp32 (default), bf16 or fp16: mixed precision by autocast (fp16 also scales the "
        "loss); see docs/gpu.md for when it pays."
    ),
]
Deterministic = Annotated[
    bool,
    typer.Option(
        "--deterministic",
        help="On a GPU, deterministic cuDNN/cuBLAS kernels (slower); the CPU always is.",
    ),
]
GpusPerJob = Annotated[
    float | None,
    typer.Option(help="With --executor ray on a GPU: GPUs per training job (0.25 shares one)."),
]


# Where each option of the experiment commands (train, audit, fit) goes in the experiment's
# config: the one table from the command line to `build_experiment`.
CONFIG_KEYS = {
    "data": "data.name",
    "root": "data.root",
    "taxonomy": "data.taxonomy",
    "protocol": "protocol.name",
    "n_splits": "protocol.options.n_splits",
    "allow_leakage": "protocol.allow_leakage",
    "model": "recipe.model",
    "recipe": "recipe.preset",
    "epochs": "recipe.epochs",
    "seeds": "seeds",
    "flow": "prepare.flow",
    "spotting": "prepare.spotting",
    "apex_policy": "prepare.apex_policy",
    "workers": "workers",
    "cache": "cache_dir",
    "device": "device",
    "precision": "precision",
    "deterministic": "deterministic",
    "gpus_per_job": "gpus_per_job",
    "executor": "executor",
    "jobs": "executor_workers",
    "ray_address": "ray_address",
}


def config_overrides(**given: object) -> dict[str, object]:
    """The dotted config keys the given options set (`CONFIG_KEYS`): paths as text, an unset
    option or flag (None, False) left to the config file and the defaults."""
    return {
        CONFIG_KEYS[name]: str(value) if isinstance(value, Path) else value
        for name, value in given.items()
        if value is not None and value is not False
    }
