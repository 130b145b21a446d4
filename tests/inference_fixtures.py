"""Test helpers for the inference tests: small checkpoints and clear-motion synthetic videos."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import torch

from merkit.inference.checkpoint import CheckpointMeta, input_spec_of, save_checkpoint
from merkit.models import create_model
from merkit.preprocess.pipeline import PrepareConfig
from merkit.synthetic.dataset import SyntheticConfig

CLASSES = ("happiness", "surprise", "disgust")
SMALL_CABM = {"dim": 16, "depth": 2}
# Clear motion: large action units, little head drift, no blinks or habitual twitches.
CLEAR = SyntheticConfig(
    classes=CLASSES,
    amplitude_px=(2.5, 3.0),
    blink_rate=0.0,
    tic_amplitude=0.0,
    drift_px=0.2,
    drift_deg=0.05,
    noise_std=1.0,
    missing_apex=0,
)


def make_meta(
    model: str = "cabm",
    kwargs: dict | None = None,
    config: PrepareConfig | None = None,
    classes: tuple[str, ...] = CLASSES,
    in_chans: int = 3,
) -> CheckpointMeta:
    config = config or PrepareConfig(flow="dis")
    meta = CheckpointMeta(
        model=model,
        model_kwargs=dict(kwargs if kwargs is not None else SMALL_CABM if model == "cabm" else {}),
        num_classes=len(classes),
        in_chans=in_chans,
        class_names=classes,
        input_spec=dataclasses.asdict(input_spec_of(config)),
        prepare=dataclasses.asdict(config),
        dataset="synthetic",
        seed=0,
    )
    return CheckpointMeta.from_dict(meta.to_dict())


def untrained_checkpoint(
    path: Path,
    model: str = "cabm",
    config: PrepareConfig | None = None,
    seed: int = 0,
    in_chans: int = 3,
    kwargs: dict | None = None,
) -> tuple[torch.nn.Module, CheckpointMeta]:
    """An untrained (seeded) model saved as a checkpoint: for plumbing, parity and speed tests."""
    meta = make_meta(model, kwargs, config=config, in_chans=in_chans)
    torch.manual_seed(seed)
    net = create_model(meta.model, meta.num_classes, meta.in_chans, **meta.model_kwargs).eval()
    save_checkpoint(path, net, meta)
    return net, meta


def no_model(model: str, device: str = "cpu") -> None:
    """Stand-in for the pool workers' model loading."""


def slow_predict(input: Path, options: dict) -> str:
    """Stand-in for one video's prediction: 0.5 s, leaving a mark in $MERKIT_TEST_MARKS."""
    time.sleep(0.5)
    (Path(os.environ["MERKIT_TEST_MARKS"]) / f"{Path(input).name}.done").touch()
    return str(input)
