"""CAS(ME)^3 part A (Li et al., 2022): 30 fps, 1280x720, 94 subjects, 860 labelled clips."""

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
)
from merkit.data.registry import register_dataset
from merkit.data.taxonomy import get_taxonomy

SHEET = "label"
COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "emotion")
OPTIONAL = ("Objective class",)
LAYOUT = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx (sheet 'label') + spNO.1/b/color/175.jpg"


@register_dataset("casme3", title="CAS(ME)^3 part A", layout=LAYOUT, taxonomies=("all", "3class"))
def load_casme3(
    root: Path, taxonomy: str = "3class", *, annotations: str | Path | None = None
) -> SampleSet:
    """Load CAS(ME)^3 part A; colour frames are read from each clip's `color/` folder.

    The subject folders (spNO.1, ...) may sit in `root` or a few wrapper folders below it.
    """
    root = Path(root)
    tax = get_taxonomy("casme3", taxonomy)
    sheet = annotation_file(
        root, annotations, "cas(me)3_part_A_ME_label*.xlsx", "CAS(ME)^3 label sheet"
    )
    out = Collector()
    frames = find_dir_holding(root, "spNO.*")
    if frames is None:
        out.note(f"no subject folders (spNO.*) under {root}: samples carry annotations only")

    def to_clip(row: Row) -> ClipRow:
        subject, clip = as_text(row["Subject"]), as_text(row["Filename"])
        return ClipRow(
            row=row,
            dataset="casme3",
            subject=subject,
            clip=clip,
            folder=None if frames is None else frames / subject / clip / "color",
            emotion=row["emotion"],
            onset=row["Onset"],
            apex=row["Apex"],
            offset=row["Offset"],
            action_units=row["AU"],
            meta={"fps": "30", "objective_class": as_text(row["Objective class"])},
        )

    add_rows(out, tax, read_sheet(sheet, COLUMNS, sheet=SHEET, optional=OPTIONAL), to_clip)
    return out.result("casme3", root, tax)
