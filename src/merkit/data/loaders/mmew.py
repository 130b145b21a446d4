"""MMEW (Ben et al., 2021): 90 fps, 1920x1080, 36 subjects; clips filed under emotion folders."""

from __future__ import annotations

from pathlib import Path

from merkit.data.annotations import Row, as_text, read_sheet
from merkit.data.base import SampleSet
from merkit.data.files import subdirs
from merkit.data.loaders._common import (
    ClipRow,
    Collector,
    add_rows,
    annotation_file,
    find_dir_holding,
)
from merkit.data.registry import register_dataset
from merkit.data.taxonomy import get_taxonomy

COLUMNS = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
)
OPTIONAL = ("remarks",)
MICRO_DIR = "Micro_Expression"
LAYOUT = "MMEW_Micro_Exp.xlsx + Micro_Expression/{emotion}/S01-01-001/15.jpg"


def clip_folders(micro: Path) -> dict[str, Path]:
    """Clip folders by name across the emotion folders (their spelling varies in case)."""
    return {clip.name: clip for emotion in subdirs(micro) for clip in subdirs(emotion)}


@register_dataset("mmew", title="MMEW", layout=LAYOUT, taxonomies=("all", "3class"))
def load_mmew(
    root: Path, taxonomy: str = "all", *, annotations: str | Path | None = None
) -> SampleSet:
    """Load MMEW's micro-expression part (the macro-expression folder is not read)."""
    root = Path(root)
    tax = get_taxonomy("mmew", taxonomy)
    sheet = annotation_file(root, annotations, "MMEW_Micro_Exp*.xlsx", "MMEW annotation sheet")
    out = Collector()
    parent = find_dir_holding(root, MICRO_DIR, depth=2)
    micro = None if parent is None else parent / MICRO_DIR
    folders = {} if micro is None else clip_folders(micro)
    if micro is None:
        out.note(f"no {MICRO_DIR}/ folder under {root}: samples carry annotations only")

    def to_clip(row: Row) -> ClipRow:
        subject, clip = as_text(row["Subject"]), as_text(row["Filename"])
        emotion = as_text(row["Estimated Emotion"])
        return ClipRow(
            row=row,
            dataset="mmew",
            subject=subject,
            clip=clip,
            folder=None if micro is None else folders.get(clip, micro / emotion / clip),
            emotion=emotion,
            onset=row["OnsetFrame"],
            apex=row["ApexFrame"],
            offset=row["OffsetFrame"],
            action_units=row["Action Units"],
            meta={"fps": "90", "remarks": as_text(row["remarks"])},
        )

    add_rows(out, tax, read_sheet(sheet, COLUMNS, optional=OPTIONAL), to_clip)
    return out.result("mmew", root, tax)
