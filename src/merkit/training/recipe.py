"""A training recipe: everything that decides how one model is fit, as a plain dataclass.

The recipe never looks at a held-out subject: model selection is a fixed schedule, or (when
`val_subjects` > 0) a validation split carved from the training subjects of each fold.

Named presets: every model has a `default` recipe (merkit's), and a model may have more under
other names (`paper`: its authors' recipe). `default_recipe(model, preset)` builds one;
`preset_input(model, preset)` gives the preparation keys the preset was made for (e.g. 30 RGB
frames of 128 x 128 for ICIP 2024's), which replace what the model's declared input implies.
`merkit train --recipe NAME` and the config key `recipe.preset` select one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from merkit.errors import ConfigError

DEFAULT_PRESET = "default"


@dataclass
class AugmentConfig:
    """Flow-aware augmentation: a horizontal flip mirrors the map AND negates u."""

    hflip: bool = True
    max_shift: int = 2  # pixels, random translation
    max_rotate: float = 0.0  # degrees
    max_scale: float = 0.0  # random zoom by a factor in [1 - max_scale, 1 + max_scale]
    contrast: float = 0.0  # flow gain about the no-motion level, in [1/(1+c), 1+c]
    erase: float = 0.0  # probability of resetting a random patch to no motion (cutout)
    noise_std: float = 0.0
    u_scaling: str = "minmax"  # "minmax": maps scaled to 0..1 per sample (flip: u -> 1-u); "signed"
    mixup: float = 0.0  # Beta(a, a) mixup of pairs within a batch; 0 disables


@dataclass
class Recipe:
    model: str = "cabm"
    model_kwargs: dict = field(default_factory=dict)
    preset: str = "default"  # the named recipe of `model` these values started from
    epochs: int = 60
    batch_size: int = 64
    optimizer: str = "adamw"  # "adamw" | "adam" | "sgd"
    lr: float = 1e-3
    eps: float = 1e-8  # Adam/AdamW epsilon (Keras' Adam: 1e-7)
    weight_decay: float = 0.05
    schedule: str = "cosine"  # "cosine" | "constant"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    class_weighted: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    ensemble: int = 1  # members (different seeds) averaged per fold
    val_subjects: int = 0  # >0: hold out this many training subjects for model selection
    folds_per_batch: int = 0  # folds trained at once as one batched model (0: engine decides)
    tta_flip: bool = False  # average test probabilities over the map and its flow-aware mirror
    ema: float = 0.0  # >0: evaluate a moving average of the weights, this decay per step
    sam: float = 0.0  # >0: sharpness-aware minimisation with this radius rho (2x the compute)
    max_steps: int = 0  # >0: stop after this many optimiser steps (the last epoch cut short)
    shuffle: bool = True  # False: every epoch visits the training samples in their given order

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        data = dict(data)
        augment = AugmentConfig(**data.pop("augment", {}))
        return cls(augment=augment, **data)


# The recipe of a model fitted in closed form (the classic SVMs, `merkit.training.closed_form`): it
# has no epochs, so nothing of gradient training is switched on; `class_weighted` chooses the
# SVM's balanced class weights.
CLOSED_FORM: dict = {
    "epochs": 1,
    "class_weighted": True,
    "augment": {"hflip": False, "max_shift": 0},
}
# Recipe keys a closed-form fit reads (the rest only steer gradient training).
_CLOSED_FORM_KEYS = ("model", "model_kwargs", "class_weighted", "folds_per_batch")


def gradient_settings(recipe: Recipe) -> list[str]:
    """The (dotted) keys of `recipe` that differ from `CLOSED_FORM` and that only gradient
    training would use: set on a closed-form model, they would silently change nothing."""
    reference = Recipe.from_dict({"model": recipe.model, **CLOSED_FORM}).to_dict()
    given = recipe.to_dict()
    keys = []
    for key, value in given.items():
        if key in _CLOSED_FORM_KEYS:
            continue
        if key == "augment":
            keys += [f"augment.{k}" for k, v in value.items() if v != reference[key][k]]
        elif value != reference[key]:
            keys.append(key)
    return keys


# The model an experiment trains when its config names none (`merkit train` without --model).
DEFAULT_MODEL = "recommended"


def recipe_presets(model: str) -> list[str]:
    """The named recipes of `model`: "default" first, then its others (e.g. "paper")."""
    return [DEFAULT_PRESET, *_PRESETS.get(model, {})]


def _preset(model: str, preset: str) -> dict[str, Any]:
    if preset == "default":
        return dict(_DEFAULTS.get(model, {}))
    try:
        return dict(_PRESETS[model][preset])
    except KeyError:
        known = ", ".join(recipe_presets(model))
        raise ConfigError(
            f"model {model!r} has no recipe preset {preset!r}; its presets: {known}"
        ) from None


def default_recipe(model: str, preset: str = "default") -> Recipe:
    """The shipped recipe `preset` of `model` (a fixed schedule: nothing is chosen on held-out
    data); a ConfigError naming the model's presets if it has no such one."""
    values = _preset(model, preset)
    values.pop("input", None)
    return Recipe.from_dict({"model": model, "preset": preset, **values})


def preset_input(model: str, preset: str = "default") -> dict[str, Any]:
    """PrepareConfig keys the preset was made for, over what the model's input spec implies."""
    return dict(_preset(model, preset).get("input", {}))


# ICIP 2024's optimiser and batch, shared by its CPU default and its `paper` presets: Keras'
# 'adam' (lr 1e-3, eps 1e-7), batch 8, constant rate, no augmentation, no weight decay (the
# model adds its own L2 on the layers the authors regularise).
_ICIP24_OPTIMISER: dict[str, Any] = {
    "batch_size": 8,
    "optimizer": "adam",
    "lr": 1e-3,
    "eps": 1e-7,
    "weight_decay": 0.0,
    "schedule": "constant",
    "augment": {"hflip": False, "max_shift": 0},
}


# Chosen once on the MEGC2019 development subjects with the research log in the engine's report;
# the baselines follow their papers (Adam, their learning rates), shortened to run in minutes.
_DEFAULTS: dict[str, dict] = {
    # LOSO on the 380 development maps: UF1 0.7173, UAR 0.7292 (seed 0), ~340 CPU-seconds.
    "cabm": {
        "model_kwargs": {"dim": 32, "depth": 4, "kernel": 7, "patch": 4},
        "epochs": 40,
        "batch_size": 64,
        "optimizer": "adamw",
        "lr": 2e-3,
        "weight_decay": 0.05,
        "schedule": "cosine",
        "warmup_epochs": 3,
        "label_smoothing": 0.1,
        "class_weighted": True,
        "augment": {"hflip": True, "max_shift": 2},
        "ensemble": 1,
    },
    # Authors' code: Adam, lr 5e-5, batch 256, 800 epochs, last epoch kept. Here: the same
    # optimizer and fixed schedule with 4x smaller batches and a 10x larger step, 100 epochs.
    "ststnet": {
        "epochs": 100,
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 5e-4,
        "weight_decay": 0.0,
        "schedule": "constant",
        "augment": {"hflip": False, "max_shift": 0},
    },
    # Gan et al. 2019: Adam, lr 1e-4, fixed schedule, no augmentation.
    "offapexnet": {
        "epochs": 60,
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 1e-4,
        "weight_decay": 0.0,
        "schedule": "constant",
        "augment": {"hflip": False, "max_shift": 0},
    },
    # HTNet at an eighth of the authors' width (dim 32: 2.2 M parameters against 140 M), their
    # depth, heads and optimiser; merkit's choice, so that a LOSO fits a CPU.
    "htnet": {
        "model_kwargs": {"dim": 32},
        "epochs": 40,
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 5e-4,
        "weight_decay": 0.0,
        "schedule": "constant",
        "augment": {"hflip": False, "max_shift": 0},
    },
    # The family's recipes: short fixed schedules measured on the synthetic LOSO benchmark
    # (benchmarks/family_synthetic.py). The flow-aware flip is only right for flow maps, so the
    # sequence models train without it.
    "convat": {
        "epochs": 20,
        "batch_size": 16,
        "optimizer": "adamw",
        "lr": 2e-3,
        "weight_decay": 0.05,
        "schedule": "cosine",
        "augment": {"hflip": True, "max_shift": 2},
    },
    "c3dgru": {
        "epochs": 15,
        "batch_size": 16,
        "optimizer": "adamw",
        "lr": 3e-3,
        "weight_decay": 0.05,
        "schedule": "cosine",
        "augment": {"hflip": False, "max_shift": 2},
    },
    # Fitted in closed form (scikit-learn SVMs): the settings are the models' own options.
    "hoof-svm": CLOSED_FORM,
    "lbptop-svm": CLOSED_FORM,
    "map-svm": CLOSED_FORM,
    # An ensemble's own recipe sets nothing either: each member trains with its shipped recipe.
    "recommended": CLOSED_FORM,
    # The authors' optimiser (Adam 1e-3, eps 1e-7, batch 8, constant rate, no augmentation, no
    # weight decay: the model adds its own L2 on the layers the authors regularise) on a
    # CPU-sized version: 10 grey frames of 48 x 48 (the authors': 30 RGB frames of 128 x 128;
    # SMIC's 10 frames give the same 3 GRU steps), 16 filters instead of 32, 30 epochs instead
    # of 200. Everything else is the authors' network. The `paper` presets are theirs.
    "icip24": {
        **_ICIP24_OPTIMISER,
        "model_kwargs": {"frame_channels": 1, "size": 48, "filters": 16},
        "epochs": 30,
        "input": {"frames": 10, "size": 48, "color": False},
    },
    # The authors' optimiser (AdamW 1e-4, weight decay 1e-3, constant rate) on a CPU-sized
    # version: 8 grey frames of 64 x 64 cropped to 56 (the authors': 144 cropped to 128) and a
    # FlowNetC 1/16 as wide; batch 16 and 30 epochs instead of 32 and 1001 steps, at 1e-3.
    # MOL crops its own clips: the engine's augmentations would corrupt its packed targets.
    "mol": {
        "model_kwargs": {"crop": 56, "flow_width": 0.0625},
        "epochs": 30,
        "batch_size": 16,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-3,
        "schedule": "constant",
        "augment": {"hflip": False, "max_shift": 0},
        "input": {"size": 64},
    },
}


def _icip24_paper(dropout: float, frames: int) -> dict[str, Any]:
    """ICIP 2024's recipe (`ME_model.py:66-73, 226-251`): Adam ('adam': lr 1e-3, eps 1e-7),
    batch 8, 200 epochs, no augmentation; RGB frames of 128 x 128; time step 0 scored."""
    return {
        **_ICIP24_OPTIMISER,
        "model_kwargs": {"frame_channels": 3, "size": 128, "dropout": dropout, "score_step": 0},
        "epochs": 200,
        "input": {"frames": frames, "size": 128, "color": True},
    }


# Named recipes beside the defaults. "input" holds the PrepareConfig keys the recipe was made for.
_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # CASME II: 30 frames, dropout 0.5; SAMM: 30 frames, 0.3; SMIC: 10 frames, 0.3.
    "icip24": {
        "paper": _icip24_paper(0.5, 30),
        "paper-samm": _icip24_paper(0.3, 30),
        "paper-smic": _icip24_paper(0.3, 10),
    },
    # MOL (`train.py:13, 73-77`, `dataset.py`): AdamW lr 1e-4, weight decay 1e-3, batch 32,
    # shuffled, constant rate, 1001 optimiser steps; 8 grey frames of 144 x 144, random 128
    # crops; the authors' network (crop 128, F5C width 128, full FlowNetC).
    "mol": {
        "paper": {
            "model_kwargs": {},
            "epochs": 1001,  # an upper bound: max_steps ends the schedule
            "max_steps": 1001,
            "batch_size": 32,
            "optimizer": "adamw",
            "lr": 1e-4,
            "weight_decay": 1e-3,
            "schedule": "constant",
            "augment": {"hflip": False, "max_shift": 0},
            "input": {"frames": 8, "size": 144, "color": False},
        },
    },
    # HTNet, main_HTNet.py:161-301: the authors' network (HTNetConfig's defaults), unweighted CE,
    # Adam lr 5e-5, batch 256 from an unshuffled loader, 800 epochs, no augmentation. (Their
    # last batch of an epoch is the remainder; merkit's engine keeps one batch size, so it is
    # filled up with the first samples of the order.) About 140 M parameters: 0.26 s per sample
    # and step on one CPU core, some 45 core-days for one LOSO; the default recipe is merkit's.
    "htnet": {
        "paper": {
            "model_kwargs": {},
            "epochs": 800,
            "batch_size": 256,
            "optimizer": "adam",
            "lr": 5e-5,
            "weight_decay": 0.0,
            "schedule": "constant",
            "shuffle": False,
            "augment": {"hflip": False, "max_shift": 0},
        }
    },
}
