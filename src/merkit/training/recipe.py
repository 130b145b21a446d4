"""A training recipe: everything that decides how one model is fit, as a plain dataclass.

The recipe never looks at a held-out subject: model selection is a fixed schedule, or (when
`val_subjects` > 0) a validation split carved from the training subjects of each fold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
    epochs: int = 60
    batch_size: int = 64
    optimizer: str = "adamw"  # "adamw" | "adam" | "sgd"
    lr: float = 1e-3
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        data = dict(data)
        augment = AugmentConfig(**data.pop("augment", {}))
        return cls(augment=augment, **data)


# The recipe of a model fitted in closed form (the classic SVMs, `merkit.training.classic`): it
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


def default_recipe(model: str) -> Recipe:
    """The shipped recipe of `model` (a fixed schedule: nothing is chosen on held-out data)."""
    if model not in _DEFAULTS:
        return Recipe(model=model)
    return Recipe.from_dict({"model": model, **_DEFAULTS[model]})


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
    "mol": {
        "epochs": 40,  # synthetic LOSO UF1 0.29 after 15 epochs, 0.60 after 40
        "batch_size": 16,
        "optimizer": "adamw",
        "lr": 3e-3,
        "weight_decay": 0.05,
        "schedule": "cosine",
        "augment": {"hflip": False, "max_shift": 2},
    },
}
