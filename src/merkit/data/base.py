"""What a loader returns: the samples, plus what it skipped or estimated, so nothing is silent."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from merkit.data.sample import APEX_ANNOTATED, Sample


@dataclass(frozen=True)
class Skipped:
    """An annotation row or folder the loader did not turn into a sample, and why."""

    item: str
    reason: str


@dataclass
class SampleSet:
    """A loaded dataset: a list of samples (lazy: no image is decoded) and the loader's report."""

    name: str  # registry name of the loader ("casme2", "megc2019-flow", ...)
    root: Path
    class_names: tuple[str, ...]
    taxonomy: str  # taxonomy name ("all", "5class", "3class")
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def subjects(self) -> list[str]:
        return list(dict.fromkeys(s.subject_key for s in self.samples))

    def class_counts(self) -> dict[str, int]:
        counts = Counter(self.class_names[s.label] for s in self.samples)
        return {c: counts.get(c, 0) for c in self.class_names}

    def apex_counts(self) -> dict[str, int]:
        counts = Counter(s.apex_source for s in self.samples)
        counts.setdefault(APEX_ANNOTATED, 0)
        return dict(counts)

    def fingerprint(self) -> str:
        """Hash of the sample list, labels and file sizes: recorded with every result."""
        digest = hashlib.sha256()
        for s in self.samples:
            size = s.path.stat().st_size if s.path is not None and s.path.is_file() else 0
            line = f"{s.uid}|{s.label}|{s.onset}|{s.apex}|{s.offset}|{len(s.frames)}|{size}\n"
            digest.update(line.encode())
        return digest.hexdigest()[:16]
