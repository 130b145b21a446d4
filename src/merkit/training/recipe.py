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
    noise_std: float = 0.0


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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        data = dict(data)
        augment = AugmentConfig(**data.pop("augment", {}))
        return cls(augment=augment, **data)
