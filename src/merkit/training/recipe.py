"""A training recipe: everything that decides how one model is fit, as a plain dataclass.

The recipe never looks at a held-out subject: model selection is a fixed schedule, or (when
`val_subjects` > 0) a validation split carved from the training subjects of each fold.

A model's named recipes live in its own file (its descriptor's `presets`: "default" is merkit's,
"paper" and the like its authors'); `default_recipe(model, preset)` turns one into a `Recipe`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from merkit.models.registry import DEFAULT_PRESET, get_descriptor

# The model an experiment trains, and `merkit fit` fits, when none is named: the one default.
DEFAULT_MODEL = "recommended"


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
    model: str = DEFAULT_MODEL
    model_kwargs: dict = field(default_factory=dict)
    preset: str = DEFAULT_PRESET  # the named recipe of `model` these values started from
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
    seed_members: int = 1  # copies per fold, each from its own seed, probabilities averaged
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


# What a model without a training schedule (a closed-form SVM, an average of other models) starts
# from: no epochs of gradient training and nothing of it switched on; `class_weighted` chooses the
# SVM's balanced class weights.
CLOSED_FORM: dict[str, Any] = {
    "epochs": 1,
    "class_weighted": True,
    "augment": {"hflip": False, "max_shift": 0},
}
# Recipe keys a closed-form fit reads (the rest only steer gradient training).
_CLOSED_FORM_KEYS = ("model", "model_kwargs", "preset", "class_weighted", "folds_per_batch")


def gradient_settings(recipe: Recipe) -> list[str]:
    """The (dotted) keys of `recipe` that differ from `CLOSED_FORM` and that only gradient
    training would use: set on a closed-form model or an average, they would change nothing."""
    reference = Recipe.from_dict({"model": recipe.model, **CLOSED_FORM}).to_dict()
    keys = []
    for key, value in recipe.to_dict().items():
        if key in _CLOSED_FORM_KEYS:
            continue
        if key == "augment":
            keys += [f"augment.{k}" for k, v in value.items() if v != reference[key][k]]
        elif value != reference[key]:
            keys.append(key)
    return keys


def recipe_presets(model: str) -> list[str]:
    """The named recipes of `model`: "default" first, then its others (e.g. "paper")."""
    return list(get_descriptor(model).presets)


def default_recipe(model: str, preset: str = DEFAULT_PRESET) -> Recipe:
    """The shipped recipe `preset` of `model` (a fixed schedule: nothing is chosen on held-out
    data); a ConfigError naming the model's presets if it has no such one."""
    descriptor = get_descriptor(model)
    base = CLOSED_FORM if descriptor.training != "gradient" else {}
    values = {**base, **descriptor.preset(preset).recipe}
    return Recipe.from_dict({"model": model, "preset": preset, **values})
