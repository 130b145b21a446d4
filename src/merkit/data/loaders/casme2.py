"""CASME II (Yan et al., 2014): 200 fps, 640x480, 26 subjects; coding sheet + frame folders."""

from __future__ import annotations

from pathlib import Path

from merkit.data.annotations import Row, as_text, read_sheet
from merkit.data.base import SampleSet
from merkit.data.loaders._common import (
    ClipRow,
    Collector,
    add_rows,
    annotation_file,
    subject_id,
)
from merkit.data.registry import register_dataset
from merkit.data.taxonomy import get_taxonomy
from merkit.errors import ConfigError, DataLayoutError

COLUMNS = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
)
# The two releases of the frames: the raw selected clips (img46.jpg) and the cropped,
# registered faces (reg_img46.jpg). Both carry the spreadsheet's frame index in the name.
FRAME_FOLDERS = {"raw": "CASME2_RAW_selected", "cropped": "Cropped"}
LAYOUT = (
    "CASME2-coding-*.xlsx + CASME2_RAW_selected/sub01/EP02_01f/img46.jpg "
    "or Cropped/sub01/EP02_01f/reg_img46.jpg"
)


def frame_root(root: Path, frames: str | None) -> tuple[str, Path] | None:
    """Which frame release to read: the one asked for, else the first present, else None."""
    if frames is not None:
        if frames not in FRAME_FOLDERS:
            raise ConfigError(f"frames={frames!r}: choose one of {', '.join(FRAME_FOLDERS)}")
        folder = root / FRAME_FOLDERS[frames]
        if not folder.is_dir():
            raise DataLayoutError(f"{folder}: frames={frames!r} asked for, folder not found")
        return frames, folder
    for kind, name in FRAME_FOLDERS.items():
        if (root / name).is_dir():
            return kind, root / name
    return None


@register_dataset("casme2", title="CASME II", layout=LAYOUT, taxonomies=("all", "5class", "3class"))
def load_casme2(
    root: Path,
    taxonomy: str = "5class",
    *,
    annotations: str | Path | None = None,
    frames: str | None = None,
) -> SampleSet:
    """Load CASME II; `frames` picks "raw" or "cropped" (default: whichever is present).

    Rows whose ApexFrame is blank or not a number ("/") get the middle of onset..offset as apex
    (apex_source "estimated-middle"), and each such row is listed in the notes.
    """
    root = Path(root)
    tax = get_taxonomy("casme2", taxonomy)
    sheet = annotation_file(root, annotations, "CASME2-coding-*.xlsx", "CASME II coding sheet")
    out = Collector()
    found = frame_root(root, frames)
    if found is None:
        names = " or ".join(FRAME_FOLDERS.values())
        out.note(f"no frame folder ({names}) in {root}: samples carry annotations only")

    def to_clip(row: Row) -> ClipRow:
        subject = subject_id(row["Subject"], "sub{:02d}", row.where)
        clip = as_text(row["Filename"])
        return ClipRow(
            row=row,
            dataset="casme2",
            subject=subject,
            clip=clip,
            folder=None if found is None else found[1] / subject / clip,
            emotion=row["Estimated Emotion"],
            onset=row["OnsetFrame"],
            apex=row["ApexFrame"],
            offset=row["OffsetFrame"],
            action_units=row["Action Units"],
            meta={"fps": "200", "frames": found[0] if found else "none"},
        )

    add_rows(out, tax, read_sheet(sheet, COLUMNS), to_clip)
    return out.result("casme2", root, tax)
