"""MEGC2019 composite as published flow maps (STSTNet/HTNet input): one 28x28 PNG per sample.

The ground truth `combined_3class_gt.csv` has no header (`db,subject,filename,label`) and
writes SAMM subjects unpadded (`6`), while the maps are named `{subject}_{filename} .png`
(a space before `.png`) with SAMM subjects padded (`006_006_1_2 .png`). Subjects are stored
canonically (sub02, 006, s01) so ids match the `megc2019` loader's.

An optional `apex/` folder beside the maps holds each sample's apex face as
`{subject}_{filename}.jpg` (the 224x224 crops redistributed by HTNet, same naming as the maps);
its path is recorded in `Sample.meta["apex_face"]`, where the facial-region preparation finds it.
"""

from __future__ import annotations

from pathlib import Path

from merkit.data.annotations import find_file
from merkit.data.base import SampleSet
from merkit.data.files import subdirs
from merkit.data.loaders._common import Collector
from merkit.data.loaders.megc2019 import GT_NAME, check_taxonomy, read_megc_gt
from merkit.data.registry import register_dataset
from merkit.data.sample import APEX_FACE, Sample
from merkit.data.taxonomy import MEGC3_CLASSES
from merkit.errors import DataLayoutError

LAYOUT = (
    f"{GT_NAME} + one folder of '{{subject}}_{{filename}} .png' maps (e.g. 006_006_1_2 .png)"
    " [+ apex/{subject}_{filename}.jpg apex faces]"
)
APEX_FOLDER = "apex"
FACE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def maps_folder(root: Path) -> Path:
    """The one sub-folder of `root` that holds PNG files."""
    found = [d for d in subdirs(root) if d.name != APEX_FOLDER and any(d.glob("*.png"))]
    if len(found) != 1:
        names = ", ".join(d.name for d in found) or "none"
        raise DataLayoutError(
            f"{root}: expected exactly one folder of .png maps (found: {names}); pass maps=DIR"
        )
    return found[0]


def map_path(folder: Path, subject: str, filename: str) -> Path | None:
    """The map of one sample: the published name with its space, or the same without it."""
    for name in (f"{subject}_{filename} .png", f"{subject}_{filename}.png"):
        if (folder / name).is_file():
            return folder / name
    return None


def apex_face_path(folder: Path | None, subject: str, filename: str) -> Path | None:
    """The apex face of one sample in `folder`, whatever its image suffix, or None."""
    if folder is None:
        return None
    for suffix in FACE_SUFFIXES:
        path = folder / f"{subject}_{filename}{suffix}"
        if path.is_file():
            return path
    return None


@register_dataset(
    "megc2019-flow", title="MEGC2019 flow maps", layout=LAYOUT, taxonomies=("3class",)
)
def load_megc2019_flow(
    root: Path,
    taxonomy: str = "3class",
    *,
    gt: str | Path | None = None,
    maps: str | Path | None = None,
    apex: str | Path | None = None,
) -> SampleSet:
    """Load the flow-map format; rows without a map are reported in `skipped`, not fatal.

    `apex` is the folder of apex faces (default: `root/apex` when it exists)."""
    check_taxonomy(taxonomy)
    root = Path(root)
    gt_path = Path(gt) if gt is not None else find_file(root, GT_NAME, "ground-truth CSV")
    folder = Path(maps) if maps is not None else maps_folder(root)
    if not folder.is_dir():
        raise DataLayoutError(f"{folder}: maps folder does not exist")
    faces = _apex_folder(root, apex)
    out = Collector()
    used: set[Path] = set()
    without_face = 0
    for entry in read_megc_gt(gt_path):
        path = map_path(folder, entry.subject, entry.filename)
        if path is None:
            name = f"{entry.subject}_{entry.filename} .png"
            out.skip(entry.uid, f"{entry.where}: no map '{name}' in {folder.name}/")
            continue
        used.add(path)
        meta = {"row": entry.where, "format": "flow-u-v-strain"}
        face = apex_face_path(faces, entry.subject, entry.filename)
        if face is not None:
            meta[APEX_FACE] = str(face)
        elif faces is not None:
            without_face += 1
        sample = Sample(
            dataset=entry.db,
            subject=entry.subject,
            clip=entry.filename,
            path=path,
            emotion=MEGC3_CLASSES[entry.label],
            label=entry.label,
            meta=meta,
        )
        out.add(sample, entry.where)
    unlisted = len(set(folder.glob("*.png")) - used)
    if unlisted:
        out.note(f"{unlisted} map(s) in {folder.name}/ are not listed in {gt_path.name}")
    if without_face:
        out.note(f"{without_face} sample(s) have no apex face in {faces}")
    return SampleSet(
        "megc2019-flow", root, MEGC3_CLASSES, "3class", out.samples, out.skipped, out.notes
    )


def _apex_folder(root: Path, apex: str | Path | None) -> Path | None:
    """The apex-face folder: the one given (which must exist), else `root/apex` if present."""
    if apex is None:
        default = root / APEX_FOLDER
        return default if default.is_dir() else None
    folder = Path(apex)
    if not folder.is_dir():
        raise DataLayoutError(f"{folder}: apex-face folder does not exist")
    return folder
