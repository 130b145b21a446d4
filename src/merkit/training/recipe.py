"""A training recipe: everything that decides how one model is fit, as a plain dataclass.

The recipe never looks at a held-out subject: model selection is a fixed schedule, or (when
`val_subjects` > 0) a validation split carved from the training subjects of each fold.

Each model has a shipped default recipe (`default_recipe`), a fixed schedule sized for a CPU;
some also have named presets (`recipe_preset(model, "paper")`: the authors' own recipe), which a
config selects with the recipe key `preset` (other recipe keys then override the preset).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
    shuffle: bool = True  # False: every epoch visits the training samples in their given order

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        data = dict(data)
        augment = AugmentConfig(**data.pop("augment", {}))
        return cls(augment=augment, **data)


def default_recipe(model: str) -> Recipe:
    """The shipped recipe of `model` (a fixed schedule: nothing is chosen on held-out data)."""
    if model not in _DEFAULTS:
        return Recipe(model=model)
    return Recipe.from_dict({"model": model, **_DEFAULTS[model]})


def recipe_presets(model: str) -> list[str]:
    """The named recipes of `model`: "default" and any of `_PRESETS`."""
    return [DEFAULT_PRESET, *_PRESETS.get(model, {})]


def recipe_preset(model: str, preset: str = DEFAULT_PRESET) -> Recipe:
    """The recipe named `preset` of `model`; ConfigError naming the model's presets otherwise."""
    if preset == DEFAULT_PRESET:
        return default_recipe(model)
    if preset not in _PRESETS.get(model, {}):
        known = ", ".join(recipe_presets(model))
        raise ConfigError(f"model {model!r} has no recipe preset {preset!r}; presets: {known}")
    return Recipe.from_dict({"model": model, **_PRESETS[model][preset]})


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


# Named recipes beside the defaults. "paper": the authors' published training, for runs on
# hardware that can afford it.
_PRESETS: dict[str, dict[str, dict]] = {
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
