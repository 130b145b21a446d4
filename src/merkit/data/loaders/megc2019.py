"""MEGC2019 composite (3-class): SMIC-HS + CASME II + SAMM, built from the three raw releases.

Convention: `root` holds `CASME2/`, `SAMM/` and `SMIC/` (each laid out as its own loader
expects); `casme2_root=`, `samm_root=`, `smic_root=` point elsewhere. Samples keep their
source database as `dataset` ("casme2", "samm", "smic") and the MEGC names (sub01, 006, s01),
so their ids equal those of the official ground truth and of the `megc2019-flow` maps.
With `gt=combined_3class_gt.csv` the composite is cut to exactly the listed samples and labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from merkit.data.annotations import as_int, is_plain_name, read_headerless_csv
from merkit.data.base import SampleSet, Skipped
from merkit.data.loaders._common import subject_id
from merkit.data.loaders.casme2 import load_casme2
from merkit.data.loaders.samm import load_samm
from merkit.data.loaders.smic import load_smic
from merkit.data.registry import register_dataset
from merkit.data.sample import Sample
from merkit.data.taxonomy import MEGC3_CLASSES
from merkit.errors import AnnotationError, ConfigError, DataLayoutError, LabelError

# source db -> (default sub-folder of root, loader of the raw release)
SOURCES: dict[str, tuple[str, Callable[..., SampleSet]]] = {
    "smic": ("SMIC", load_smic),
    "casme2": ("CASME2", load_casme2),
    "samm": ("SAMM", load_samm),
}
# Canonical subject ids; the official csv writes SAMM subjects unpadded ("6" -> "006").
SUBJECT_TEMPLATES = {"casme2": "sub{:02d}", "samm": "{:03d}", "smic": "s{:02d}"}
GT_NAME = "combined_3class_gt.csv"
LAYOUT = "ROOT/CASME2/ (casme2 layout) + ROOT/SAMM/ (samm layout) + ROOT/SMIC/ (smic layout)"


@dataclass(frozen=True)
class GroundTruth:
    """One line of the official ground truth, with the subject in canonical form."""

    db: str
    subject: str
    filename: str
    label: int
    where: str

    @property
    def uid(self) -> str:
        return f"{self.db}/{self.subject}/{self.filename}"


def read_megc_gt(path: Path) -> list[GroundTruth]:
    """Lines of `combined_3class_gt.csv` (no header: db,subject,filename,label 0/1/2).

    The file defines the benchmark, so a bad line refuses the whole file rather than silently
    changing the protocol; labels saved as floats by a spreadsheet ("1.0") are accepted.
    """
    entries = []
    for row in read_headerless_csv(path, ("db", "subject", "filename", "label")):
        db = row["db"].lower()
        if db not in SUBJECT_TEMPLATES:
            raise AnnotationError(
                f"{row.where}: unknown db {row['db']!r} (expected casme2, samm or smic)"
            )
        label = as_int(row["label"])
        if label not in (0, 1, 2):
            raise LabelError(f"{row.where}: label {row['label']!r} is not 0, 1 or 2")
        if not is_plain_name(row["filename"]):
            raise AnnotationError(f"{row.where}: filename {row['filename']!r} is not a clip name")
        subject = subject_id(row["subject"], SUBJECT_TEMPLATES[db], row.where)
        entries.append(GroundTruth(db, subject, row["filename"], label, row.where))
    return entries


def check_taxonomy(taxonomy: str) -> None:
    if taxonomy not in ("3class", "megc3"):
        raise ConfigError(f"taxonomy {taxonomy!r}: the MEGC2019 composite is 3class only")


def restrict_to_gt(
    samples: list[Sample], gt: Path
) -> tuple[list[Sample], list[Skipped], list[str]]:
    """Keep the samples the official file lists, with its labels; report every difference."""
    entries = {e.uid: e for e in read_megc_gt(gt)}
    kept, skipped, notes = [], [], []
    for sample in samples:
        entry = entries.pop(sample.uid, None)
        if entry is None:
            skipped.append(Skipped(sample.uid, f"not listed in {gt.name}"))
            continue
        if entry.label != sample.label:
            notes.append(
                f"{entry.where}: label {MEGC3_CLASSES[entry.label]} differs from "
                f"{sample.meta.get('row', sample.uid)} ({sample.emotion}); {gt.name} wins"
            )
            sample = replace(sample, label=entry.label)
        kept.append(sample)
    for entry in entries.values():
        skipped.append(
            Skipped(entry.uid, f"{entry.where}: listed, but not among the loaded samples")
        )
    return kept, skipped, notes


@register_dataset("megc2019", title="MEGC2019 composite", layout=LAYOUT, taxonomies=("3class",))
def load_megc2019(
    root: Path,
    taxonomy: str = "3class",
    *,
    casme2_root: str | Path | None = None,
    samm_root: str | Path | None = None,
    smic_root: str | Path | None = None,
    gt: str | Path | None = None,
) -> SampleSet:
    """Load the composite: negative / positive / surprise, every other emotion dropped."""
    check_taxonomy(taxonomy)
    root = Path(root)
    given = {"casme2": casme2_root, "samm": samm_root, "smic": smic_root}
    samples, skipped, notes = [], [], []
    for db, (folder, loader) in SOURCES.items():
        source = Path(given[db]) if given[db] is not None else root / folder
        if not source.is_dir():
            raise DataLayoutError(
                f"{source}: {db} folder not found (put it at {root / folder} or pass {db}_root=...)"
            )
        part = loader(source, "3class")
        samples += [replace(s, dataset=db) for s in part.samples]
        skipped += part.skipped
        notes += [f"{db}: {n}" for n in part.notes]
    if gt is not None:
        samples, cut, differ = restrict_to_gt(samples, Path(gt))
        skipped += cut
        notes += differ
    return SampleSet("megc2019", root, MEGC3_CLASSES, "3class", samples, skipped, notes)
