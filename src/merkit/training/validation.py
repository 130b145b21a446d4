"""The one validation pass of an experiment, run when it is built and before any data are read.

Everything a run would otherwise discover late is refused here with one sentence naming the key:
numbers no training can use, settings a model's training kind would silently ignore, a flip that
does not mirror the prepared input, augmentations that would corrupt packed targets, and a model
that cannot run on the arrays the preparation will make (a probe forward on the `meta` device,
which allocates nothing). The engines then trust what they are given.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from merkit.errors import ConfigError
from merkit.models.inputs import check_input, prepared_shape
from merkit.models.registry import get_descriptor
from merkit.preprocess.config import PrepareConfig
from merkit.preprocess.regions import region_layout
from merkit.training.augment import U_SCALINGS
from merkit.training.devices import check_device_text, check_precision
from merkit.training.executors import EXECUTORS
from merkit.training.recipe import AugmentConfig, Recipe, gradient_settings

if TYPE_CHECKING:
    from merkit.training.config import ExperimentConfig


def validate_experiment(config: ExperimentConfig) -> None:
    """Refuse an experiment that cannot run as written; see the module docstring."""
    if not config.seeds:
        raise ConfigError("seeds: at least one seed is needed")
    for seed in config.seeds:
        check_seed(seed, "seeds")
    if len(set(config.seeds)) != len(config.seeds):
        raise ConfigError(f"seeds: {config.seeds} repeats a seed")
    if config.workers < 1:
        raise ConfigError(f"workers: {config.workers} is not a positive number")
    if config.executor not in EXECUTORS:
        raise ConfigError(
            f"executor: {config.executor!r} is unknown; choose one of {', '.join(EXECUTORS)}"
        )
    if config.executor_workers < 0:
        raise ConfigError(f"executor_workers: {config.executor_workers} is negative")
    check_device_text(config.device)
    check_precision(config.precision)
    if not (math.isfinite(config.gpus_per_job) and config.gpus_per_job > 0):
        raise ConfigError(f"gpus_per_job: {config.gpus_per_job} must be a number above 0")
    if config.precision == "fp16" and any(r.sam > 0 for r in config.recipes):
        raise ConfigError(
            "precision fp16 scales the loss, which sharpness-aware minimisation (recipe.sam) "
            "does not support: use bf16 or fp32 with sam"
        )
    main_input = get_descriptor(config.recipe.model).input
    for recipe in config.recipes:
        if get_descriptor(recipe.model).input != main_input:
            raise ConfigError(
                f"extra_recipes: {recipe.model} takes other input than {config.recipe.model} "
                "(averaged models share one prepared input)"
            )
        validate_recipe(recipe, config.prepare)


SEED_LIMIT = 2**32  # numpy's and scikit-learn's seeds are 32-bit unsigned integers


def check_seed(seed: int, what: str) -> None:
    """Refuse, before any work, a seed the random generators cannot take."""
    if not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"{what}: {seed} is not a seed; expected 0 to {SEED_LIMIT - 1}")


def validate_recipe(recipe: Recipe, prepare: PrepareConfig) -> None:
    """Refuse a recipe that cannot train on the arrays `prepare` makes, naming the key."""
    _check_numbers(recipe)
    _check_augment(recipe.model, recipe.augment)
    descriptor = get_descriptor(recipe.model)
    if descriptor.training == "average":
        members = member_recipes(recipe)
    elif descriptor.closed_form:
        ignored = gradient_settings(recipe)
        if ignored:
            raise ConfigError(
                f"recipe {recipe.model}: {', '.join(ignored)} apply to gradient training only, "
                f"and {recipe.model} is fitted in closed form; remove them (its settings are "
                "model_kwargs)"
            )
        members = [recipe]
    else:
        members = [recipe]
    if descriptor.packs_targets and recipe.augment != _NO_AUGMENT:
        raise ConfigError(
            f"recipe {recipe.model}: its input carries flow and landmark targets beside "
            "the frames, which the engine's augmentations would corrupt (the model crops "
            "its training clips itself): set augment.hflip false, augment.max_shift 0 "
            "and leave the other augment keys at 0"
        )
    if (recipe.augment.hflip or recipe.tta_flip) and not flip_mirrors(prepare):
        raise ConfigError(
            f"recipe {recipe.model}: the flow-aware flip (augment.hflip / tta_flip) mirrors "
            f"u/v/strain maps of a whole face, and the prepared input is {_input_text(prepare)}: "
            "set both to false"
            + (", or use prepare.regions 'upright'" if prepare.output == "regions" else "")
        )
    for member in members:
        shape = (1, *prepared_shape(member.model, prepare))
        check_input(member.model, shape, prepare.output, **member.model_kwargs)


def flip_mirrors(prepare: PrepareConfig) -> bool:
    """Whether the flow-aware flip (mirror the map, negate u) is right for the prepared input:
    for u/v/strain maps of a whole face, and for region mosaics whose layout mirrors with the
    face (`RegionLayout.flips_with_face`); never for apex images or frame sequences."""
    if prepare.output == "regions":
        return region_layout(prepare.regions).flips_with_face
    return prepare.output == "maps"


def _input_text(prepare: PrepareConfig) -> str:
    if prepare.output == "regions":
        return f"the {prepare.regions!r} region mosaic, which does not mirror with the face"
    return f"{prepare.output} data"


def member_recipes(recipe: Recipe) -> list[Recipe]:
    """The shipped recipe of each member of an average (e.g. `recommended`); the average's own
    recipe has nothing to set (a setting there would silently not reach the members)."""
    from merkit.training.recipe import default_recipe

    descriptor = get_descriptor(recipe.model)
    if descriptor.training != "average":
        raise ConfigError(f"model {recipe.model!r} is not an average of registered models")
    ignored = gradient_settings(recipe) + (["model_kwargs"] if recipe.model_kwargs else [])
    if ignored:
        raise ConfigError(
            f"recipe {recipe.model}: {', '.join(ignored)} cannot be set on an average; its "
            f"members ({', '.join(descriptor.members)}) train with their own shipped recipes"
        )
    return [default_recipe(member) for member in descriptor.members]


def _check_numbers(r: Recipe) -> None:
    """Refuse a recipe value no training can use, naming the key, before anything is written."""
    finite = all(
        math.isfinite(v)
        for v in (r.lr, r.weight_decay, r.label_smoothing, r.ema, r.sam, r.eps)
        if isinstance(v, int | float)
    )
    checks = [
        (finite, "lr, weight_decay, label_smoothing, ema and sam must be finite numbers"),
        (isinstance(r.lr, int | float) and r.lr > 0, f"lr must be > 0, got {r.lr}"),
        (r.epochs >= 1, f"epochs must be >= 1, got {r.epochs}"),
        (r.batch_size >= 1, f"batch_size must be >= 1, got {r.batch_size}"),
        (r.weight_decay >= 0, f"weight_decay must be >= 0, got {r.weight_decay}"),
        (0 <= r.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {r.label_smoothing}"),
        (0 <= r.ema < 1, f"ema must be in [0, 1), got {r.ema}"),
        (r.sam >= 0, f"sam must be >= 0, got {r.sam}"),
        (r.seed_members >= 1, f"seed_members must be >= 1, got {r.seed_members}"),
        (r.val_subjects >= 0, f"val_subjects must be >= 0, got {r.val_subjects}"),
        (r.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {r.warmup_epochs}"),
        (r.folds_per_batch >= 0, f"folds_per_batch must be >= 0, got {r.folds_per_batch}"),
        (r.max_steps >= 0, f"max_steps must be >= 0, got {r.max_steps}"),
        (r.eps > 0, f"eps must be > 0, got {r.eps}"),
        (r.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
        (r.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"recipe {r.model}: {message}")


OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")

# No augmentation at all (the recipe of a model whose input packs targets beside the frames).
_NO_AUGMENT = AugmentConfig(hflip=False, max_shift=0)

# Allowed range of each numeric augmentation option, as (lowest, highest allowed).
_AUGMENT_RANGES = {
    "max_shift": (0, math.inf),
    "max_rotate": (0, 180),
    "max_scale": (0, 0.9),  # the zoom factor 1 - max_scale stays positive
    "contrast": (0, math.inf),
    "erase": (0, 1),  # a probability
    "noise_std": (0, math.inf),
    "mixup": (0, math.inf),
}


def _check_augment(model: str, augment: AugmentConfig) -> None:
    """One sentence naming the first augmentation option outside its range, before training
    would fail on it deep inside a fold."""
    for key, (low, high) in _AUGMENT_RANGES.items():
        value = getattr(augment, key)
        if not low <= value <= high:
            allowed = f">= {low}" if high == math.inf else f"between {low} and {high}"
            raise ConfigError(f"recipe {model}: augment.{key} must be {allowed}, got {value}")
    if augment.u_scaling not in U_SCALINGS:
        raise ConfigError(
            f"recipe {model}: augment.u_scaling must be one of {', '.join(U_SCALINGS)}, "
            f"got {augment.u_scaling!r}"
        )
