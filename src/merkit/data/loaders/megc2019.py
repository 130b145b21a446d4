"""MEGC2019 composite (3-class): SMIC-HS + CASME II + SAMM, built from the three raw releases.

Convention: `root` holds `CASME2/`, `SAMM/` and `SMIC/` (each laid out as its own loader
expects); `casme2_root=`, `samm_root=`, `smic_root=` point elsewhere. Samples keep their
source database as `dataset` ("casme2", "samm", "smic") and the MEGC names (sub01, 006, s01),
so their ids equal those of the official ground truth and of the `megc2019-flow` maps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from merkit.data.base import SampleSet, Skipped
from merkit.data.loaders.casme2 import load_casme2
from merkit.data.loaders.samm import load_samm
from merkit.data.loaders.smic import load_smic
from merkit.data.registry import register_dataset
from merkit.data.taxonomy import MEGC3_CLASSES
from merkit.errors import ConfigError, DataLayoutError

# source db -> (default sub-folder of root, loader of the raw release)
SOURCES: dict[str, tuple[str, Callable[..., SampleSet]]] = {
    "smic": ("SMIC", load_smic),
    "casme2": ("CASME2", load_casme2),
    "samm": ("SAMM", load_samm),
}
LAYOUT = "ROOT/CASME2/ (casme2 layout) + ROOT/SAMM/ (samm layout) + ROOT/SMIC/ (smic layout)"


def check_taxonomy(taxonomy: str) -> None:
    if taxonomy not in ("3class", "megc3"):
        raise ConfigError(f"taxonomy {taxonomy!r}: the MEGC2019 composite is 3class only")


@register_dataset("megc2019", title="MEGC2019 composite", layout=LAYOUT, taxonomies=("3class",))
def load_megc2019(
    root: Path,
    taxonomy: str = "3class",
    *,
    casme2_root: str | Path | None = None,
    samm_root: str | Path | None = None,
    smic_root: str | Path | None = None,
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
                f"{source}: {db} folder not found (put it at {root / folder} "
                f"or pass {db}_root=...)"
            )
        part = loader(source, "3class")
        samples += [replace(s, dataset=db) for s in part.samples]
        skipped += [Skipped(f"{db}: {s.item}", s.reason) for s in part.skipped]
        notes += [f"{db}: {n}" for n in part.notes]
    return SampleSet("megc2019", root, MEGC3_CLASSES, "3class", samples, skipped, notes)
