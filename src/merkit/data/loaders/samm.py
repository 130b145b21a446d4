"""SAMM (Davison et al., 2018): 200 fps, 2040x1088 grayscale, 32 subjects, 159 micro clips."""

from __future__ import annotations

from pathlib import Path

from merkit.data.annotations import Row, as_text, read_sheet
from merkit.data.base import SampleSet
from merkit.data.loaders._common import (
    ClipRow,
    Collector,
    add_rows,
    annotation_file,
    find_dir_holding,
    subject_id,
)
from merkit.data.registry import register_dataset
from merkit.data.taxonomy import get_taxonomy

# The header sits on Excel row 14 below 13 preamble rows; read_sheet finds it by its names.
COLUMNS = (
    "Subject",
    "Filename",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Action Units",
    "Estimated Emotion",
)
OPTIONAL = ("Inducement Code", "Micro", "Objective Classes")
SUBJECT_DIRS = "[0-9][0-9][0-9]"  # subject folders are the 3-digit ids: 006, 007, ...
LAYOUT = (
    "SAMM_Micro_FACS_Codes_v2.xlsx (13 preamble rows) + SAMM/006/006_1_2/006_05562.jpg "
    "(or ROOT/006/... directly)"
)


@register_dataset("samm", title="SAMM", layout=LAYOUT, taxonomies=("all", "5class", "3class"))
def load_samm(
    root: Path, taxonomy: str = "5class", *, annotations: str | Path | None = None
) -> SampleSet:
    """Load SAMM; the spreadsheet is looked for in `root`, then in its parent.

    Frame names pad the frame number differently from clip to clip (006_0217, 006_05588), so
    frames are matched by the integer in their name, never by a formatted string.
    """
    root = Path(root)
    tax = get_taxonomy("samm", taxonomy)
    pattern = "SAMM_Micro_FACS_Codes*.xlsx"
    if annotations is None and not any(root.glob(pattern)) and any(root.parent.glob(pattern)):
        annotations = max(root.parent.glob(pattern))
    sheet = annotation_file(root, annotations, pattern, "SAMM FACS code sheet")
    out = Collector()
    frames = find_dir_holding(root, SUBJECT_DIRS, depth=1)
    if frames is None:
        out.note(f"no subject folders (006/, ...) in {root} or {root / 'SAMM'}: annotations only")

    def to_clip(row: Row) -> ClipRow:
        subject = subject_id(row["Subject"], "{:03d}", row.where)
        clip = as_text(row["Filename"])
        return ClipRow(
            row=row,
            dataset="samm",
            subject=subject,
            clip=clip,
            folder=None if frames is None else frames / subject / clip,
            emotion=row["Estimated Emotion"],
            onset=row["Onset Frame"],
            apex=row["Apex Frame"],
            offset=row["Offset Frame"],
            action_units=row["Action Units"],
            meta={
                "fps": "200",
                "inducement": as_text(row["Inducement Code"]),
                "micro": as_text(row["Micro"]),
                "objective_class": as_text(row["Objective Classes"]),
            },
        )

    add_rows(out, tax, read_sheet(sheet, COLUMNS, optional=OPTIONAL), to_clip)
    return out.result("samm", root, tax)
