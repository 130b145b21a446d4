"""An experiment's data, made once for `merkit train`, `merkit audit` and `merkit fit`.

Load the dataset the config names, prepare its samples (skipping and listing those that fail),
and shape the arrays as the config's model takes them, checked before any training starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from merkit.data.base import SampleSet
from merkit.data.registry import load_dataset
from merkit.data.sample import Sample
from merkit.errors import DataLayoutError
from merkit.evaluation.predictions import Key, Predictions
from merkit.models.inputs import model_input, prepared_shape
from merkit.models.registry import get_descriptor
from merkit.preprocess.pipeline import prepare
from merkit.preprocess.targets import pack_sequences
from merkit.training.config import ExperimentConfig

# dtypes the engines read batch by batch as they are (others are made float32 once)
COMPACT = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint8))


def load_data(config: ExperimentConfig) -> SampleSet:
    """The dataset of `config.data`."""
    data = config.data
    return load_dataset(data.name, data.root, data.taxonomy, **data.options)


def training_input(config: ExperimentConfig, x: np.ndarray) -> np.ndarray:
    """Prepared arrays as the config's model trains on them (the model was checked against
    this shape when the experiment was validated), in their stored dtype: the engines convert
    each batch (`merkit.preprocess.arrays`).

    Models that learn from packed targets (MOL: gray + flow + landmark channels per frame) get
    them computed here from the prepared gray sequences.
    """
    recipe, prepared = config.recipe, config.prepare
    if get_descriptor(recipe.model).packs_targets and x.ndim == 5 and x.shape[2] == 1:
        x = pack_sequences(x, margin=0.0 if prepared.aligned else prepared.margin)
    expected = prepared_shape(recipe.model, prepared)
    if x.shape[1:] != expected:
        raise ValueError(f"prepared arrays of shape {x.shape[1:]}, expected {expected}")
    if x.dtype not in COMPACT:
        x = x.astype(np.float32)
    return model_input(x)  # a view: uint8 frames stay uint8 (and memory-mapped)


def no_sample_text(
    config: ExperimentConfig, dataset: SampleSet, failed: Sequence[tuple[str, str]]
) -> str:
    """Why nothing is left to train on: the first failures, each with its sheet row."""
    where = f"{config.data.root}: no sample of {dataset.name} could be prepared"
    if not failed:
        return f"{where} (the dataset lists no sample)"
    rows = {s.uid: s.meta.get("row") for s in dataset.samples}
    shown = [
        f"{uid}{f' ({rows[uid]})' if rows.get(uid) else ''}: {reason}" for uid, reason in failed[:3]
    ]
    more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    return f"{where}; all {len(failed)} failed, first: {'; '.join(shown)}{more}"


@dataclass
class TrainingData:
    """The samples that were prepared (in dataset order), their model input, and the rest."""

    dataset: SampleSet
    samples: list[Sample]  # apex updated where preparation spotted it
    x: np.ndarray  # float32, as the model takes it
    failed: list[tuple[str, str]]  # (sample uid, one-sentence reason)
    notes: list[str]  # what preparation says of the data, e.g. how many apexes it spotted
    # "regions" inputs: samples per way their facial points were found (Prepared.landmark_counts)
    landmarks: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: ExperimentConfig, progress: bool = True) -> TrainingData:
        return cls.prepare(config, load_data(config), progress)

    @classmethod
    def prepare(
        cls, config: ExperimentConfig, dataset: SampleSet, progress: bool = True
    ) -> TrainingData:
        """Prepare `dataset` as `config` says; a DataLayoutError if no sample is left."""
        prepared = prepare(
            dataset.samples,
            config.prepare,
            cache_dir=Path(config.cache_dir) if config.cache_dir else None,
            workers=config.workers,
            on_error="skip",
            progress=progress,
        )
        if not prepared.samples:
            raise DataLayoutError(no_sample_text(config, dataset, prepared.failed))
        x = training_input(config, prepared.x)
        samples, failed = list(prepared.samples), list(prepared.failed)
        return cls(dataset, samples, x, failed, list(prepared.notes), prepared.landmark_counts())

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.dataset.class_names)

    @cached_property
    def y(self) -> np.ndarray:
        return np.asarray([s.label for s in self.samples], dtype=np.int64)

    @cached_property
    def groups(self) -> np.ndarray:
        """The subject of every sample (validation subjects are carved by it)."""
        return np.asarray([s.subject_key for s in self.samples])

    @property
    def n_subjects(self) -> int:
        return len({s.subject_key for s in self.samples})

    def keys(self, indices: Sequence[int] | np.ndarray | None = None) -> list[Key]:
        """(dataset, subject, sample) of the samples at `indices` (all by default)."""
        chosen = self.samples if indices is None else [self.samples[i] for i in indices]
        return [(s.dataset, s.subject, s.clip) for s in chosen]

    def predictions(
        self, probs: np.ndarray, indices: Sequence[int] | np.ndarray | None = None
    ) -> Predictions:
        """The table of `probs` for the samples at `indices` (all by default), in that order."""
        chosen = self.samples if indices is None else [self.samples[i] for i in indices]
        true = [self.class_names[s.label] for s in chosen]
        return Predictions.from_probabilities(self.keys(indices), true, probs, self.class_names)
