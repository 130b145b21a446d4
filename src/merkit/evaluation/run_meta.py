"""A run's metadata (its `config.yaml`), typed: what ran, on which data, under which protocol.

The runner fills every field; a run folder written by hand or by an older merkit may lack some,
which then read as None and show as "?" in a report. `config` stays the plain resolved
experiment config (`ExperimentConfig.to_dict()`), which `merkit.training.config` reads back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from merkit.errors import ConfigError


@dataclass
class RunInfo:
    """The run's name (its folder) and when it started and finished (ISO 8601, UTC)."""

    name: str | None = None
    started_at: str | None = None
    finished_at: str | None = None


@dataclass
class DataInfo:
    """The dataset as loaded and as used (after samples that failed preparation)."""

    name: str | None = None
    root: str | None = None
    taxonomy: str | None = None
    class_names: list[str] = field(default_factory=list)
    fingerprint: str | None = None
    n_samples: int | None = None
    n_used: int | None = None
    n_subjects: int | None = None
    skipped_by_loader: int | None = None
    notes: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)  # {"sample", "reason"}
    # a region mosaic's facial points: samples per source ("detected", "face-box", "fallback")
    landmarks: dict[str, int] = field(default_factory=dict)


@dataclass
class ProtocolInfo:
    """The evaluation protocol and what its subject-overlap check found."""

    description: str | None = None
    subject_independent: bool = True
    n_folds: int | None = None
    leakage: str | None = None  # one sentence: the overlap check's summary
    leaking_subjects: list[str] = field(default_factory=list)


@dataclass
class RunMeta:
    """Everything `config.yaml` records about a run, section by section."""

    config: dict[str, Any]
    run: RunInfo = field(default_factory=RunInfo)
    data: DataInfo = field(default_factory=DataInfo)
    protocol: ProtocolInfo = field(default_factory=ProtocolInfo)
    determinism: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config.yaml") -> RunMeta:
        """Read the sections of a run file; keys this merkit does not know are left out."""
        if "config" not in data:
            raise ConfigError(f"{where}: not a merkit run file (expected a 'config' section)")

        def section(kind: type, key: str) -> Any:
            values = data.get(key) or {}
            if not isinstance(values, dict):
                raise ConfigError(f"{where}: section {key!r} is not a mapping")
            names = {f.name for f in dataclasses.fields(kind)}
            return kind(**{k: v for k, v in values.items() if k in names})

        return cls(
            config=dict(data["config"] or {}),
            run=section(RunInfo, "run"),
            data=section(DataInfo, "data"),
            protocol=section(ProtocolInfo, "protocol"),
            determinism=dict(data.get("determinism") or {}),
            versions=dict(data.get("versions") or {}),
            git_commit=data.get("git_commit"),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def recipe(self) -> dict[str, Any]:
        """The main recipe as recorded (plain values)."""
        return self.config.get("recipe") or {}

    @property
    def model_label(self) -> str:
        """The run's model, with the extra models averaged with it joined by `+`."""
        models = [r.get("model") for r in [self.recipe, *self.config.get("extra_recipes", [])]]
        return " + ".join(m or "?" for m in models)

    @property
    def leaking(self) -> bool:
        """Whether the run's protocol put one subject in both train and test."""
        return not self.protocol.subject_independent or bool(self.protocol.leaking_subjects)
