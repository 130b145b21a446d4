"""Tiny fake datasets in the REAL on-disk layouts of the releases, written into a folder.

Every builder copies the quirks a loader must survive (CASME II's "/" apex and blank header
cells, SAMM's 13 preamble rows and varying frame padding, SMIC's non_micro folder, the flow
maps' space before ".png") with 8x8 images, so a whole dataset takes milliseconds to write.
Other tests and the synthetic generator reuse these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from openpyxl import Workbook

from merkit.synthetic.faces import random_face, render_face

FRAME_SIZE = 8
MAP_SIZE = 28
FACE_SIZE = 96  # apex faces: the release's are 224x224; 96 keeps the face stage fast


@dataclass(frozen=True)
class Clip:
    """One annotated clip of a fake spreadsheet; `apex` may be "/" or None as in the releases."""

    subject: object
    filename: str
    onset: int
    apex: object
    offset: int
    emotion: str
    action_units: str = "AU4"


def write_image(path: Path, size: int = FRAME_SIZE, value: int = 128) -> Path:
    """A small valid grey BGR image (format from the suffix), so later stages can decode it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((size, size, 3), value, np.uint8)
    image[size // 2 :, : size // 2] = 255 - value  # some structure, not a flat field
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cv2 could not write {path}")
    return path


def write_face_image(path: Path, seed: int, size: int = FACE_SIZE) -> Path:
    """A tight colour crop of a procedural face (merkit.synthetic), like the apex faces
    redistributed with HTNet; some seeds are found by the face detector, others are not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gray = render_face(random_face(np.random.default_rng(seed)), size).astype(np.uint8)
    if not cv2.imwrite(str(path), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)):
        raise OSError(f"cv2 could not write {path}")
    return path


def write_frames(folder: Path, numbers: Sequence[int], name: Callable[[int], str]) -> list[Path]:
    """One image per frame number, named by `name(number)`."""
    return [write_image(folder / name(n), value=(40 + 7 * n) % 256) for n in numbers]


def write_xlsx(
    path: Path,
    header: Sequence[str | None],
    rows: Sequence[Sequence[object]],
    sheet: str = "Sheet1",
    preamble: Sequence[str] = (),
    extra_sheets: Sequence[str] = (),
) -> Path:
    """A spreadsheet: `extra_sheets` first, then `sheet` with `preamble` lines above the header.

    A None in `header` leaves the cell blank, which pandas reads as "Unnamed: i".
    """
    book = Workbook()
    book.remove(book.active)
    for name in extra_sheets:
        book.create_sheet(name).append(["not the annotation sheet"])
    table = book.create_sheet(sheet)
    for line in preamble:
        table.append([line])
    table.append(list(header))
    for row in rows:
        table.append(list(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def clip_numbers(clip: Clip) -> range:
    return range(clip.onset, clip.offset + 1)


# --- CASME II ----------------------------------------------------------------------------------

CASME2_XLSX = "CASME2-coding-20140508.xlsx"
CASME2_HEADER = (
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
)
CASME2_CLIPS = (
    Clip(1, "EP02_01f", 46, 48, 50, "happiness", "12"),
    Clip(1, "EP03_02", 10, "/", 14, "repression", "14"),  # the "/" apex of the release
    Clip(2, "EP01_11f", 1, 3, 5, "disgust", "4+7"),
    Clip(2, "EP06_01f", 9, 11, 12, "others", "R12"),
    Clip(3, "EP07_01", 97, 100, 103, "surprise", "1+2"),  # crosses 99 -> 100: natural order
    Clip(3, "EP08_02", 20, 22, 24, "fear", "20"),
    Clip(4, "EP09_03", 5, None, 9, "sadness", "15"),  # a blank apex cell
)


def build_casme2(
    root: Path, clips: Sequence[Clip] = CASME2_CLIPS, frames: str | None = "raw"
) -> Path:
    """CASME II: coding sheet + `CASME2_RAW_selected/` ("raw") or `Cropped/` ("cropped")."""
    rows = [
        (c.subject, c.filename, i, c.onset, c.apex, c.offset, "", c.action_units, c.emotion)
        for i, c in enumerate(clips, start=1)
    ]
    write_xlsx(root / CASME2_XLSX, CASME2_HEADER, rows)
    if frames is not None:
        folder, prefix = {"raw": ("CASME2_RAW_selected", "img"), "cropped": ("Cropped", "reg_img")}[
            frames
        ]
        for c in clips:
            clip_dir = root / folder / f"sub{int(c.subject):02d}" / c.filename
            write_frames(clip_dir, clip_numbers(c), lambda n, p=prefix: f"{p}{n}.jpg")
    return root


# --- SAMM --------------------------------------------------------------------------------------

SAMM_XLSX = "SAMM_Micro_FACS_Codes_v2.xlsx"
SAMM_PREAMBLE = tuple(
    ["SAMM Micro-Movement FACS Codes", "Version 2"] + [f"preamble line {i}" for i in range(3, 14)]
)  # 13 rows above the header, which sits on Excel row 14
SAMM_HEADER = (
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Micro",
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
    "Notes",
)
SAMM_CLIPS = (
    Clip("006", "006_1_2", 5562, 5564, 5566, "Anger", "R14"),  # frames 006_05562.jpg
    Clip("006", "006_1_3", 217, 219, 221, "Happiness", "12"),  # frames 006_0217.jpg
    Clip(7, "007_3_1", 98, 100, 102, "Other", "4"),  # subject written as a number
    Clip("007", "007_5_2", 10, 12, 14, "Fear", "1+2+4"),
)
SAMM_PADDING = {"006_1_2": 5, "006_1_3": 4}  # digits in the frame names; default 4


def build_samm(root: Path, clips: Sequence[Clip] = SAMM_CLIPS, nested: bool = True) -> Path:
    """SAMM: FACS sheet with its preamble + frames in `SAMM/006/006_1_2/` (or `006/` if not
    `nested`)."""
    rows = [
        (c.subject, c.filename, 1, c.onset, c.apex, c.offset, c.offset - c.onset + 1, "Micro - 1/2")
        + (c.action_units, c.emotion, "I", "")
        for c in clips
    ]
    write_xlsx(root / SAMM_XLSX, SAMM_HEADER, rows, preamble=SAMM_PREAMBLE)
    base = root / "SAMM" if nested else root
    for c in clips:
        subject = f"{int(c.subject):03d}"
        width = SAMM_PADDING.get(c.filename, 4)
        write_frames(
            base / subject / c.filename,
            clip_numbers(c),
            lambda n, s=subject, w=width: f"{s}_{n:0{w}d}.jpg",
        )
    return root


# --- SMIC --------------------------------------------------------------------------------------

# (folder subject, emotion folder, clip folder, number of frames)
SMIC_CLIPS = (
    ("s1", "negative", "s1_ne_01", 5),
    ("s1", "positive", "s1_po_01", 4),
    ("s2", "surprise", "s2_sur_01", 6),
    ("s10", "negative", "s10_ne_02", 3),
)


def build_smic(
    root: Path, variant: str = "HS", raw: bool = False, clips: Sequence[tuple] = SMIC_CLIPS
) -> Path:
    """SMIC: `SMIC_all_cropped/HS/s1/micro/negative/s1_ne_01/reg_image*.bmp` + `non_micro/`.

    With `raw`, the `SMIC_all_raw` tree and `image559740.bmp` names of the raw release.
    """
    top, prefix = ("SMIC_all_raw", "image") if raw else ("SMIC_all_cropped", "reg_image")
    base = root / top / variant
    start = 559740
    for subject, emotion, clip, count in clips:
        numbers = range(start, start + count)
        write_frames(
            base / subject / "micro" / emotion / clip, numbers, lambda n: f"{prefix}{n}.bmp"
        )
        start += 1000
    for subject in sorted({c[0] for c in clips}):
        write_frames(
            base / subject / "non_micro" / f"{subject}_no_01", range(1, 3), lambda n: f"{n}.bmp"
        )
    return root


# --- CAS(ME)^3 ---------------------------------------------------------------------------------

CASME3_XLSX = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
CASME3_HEADER = (
    "Subject",
    "Filename",
    "Onset",
    "Apex",
    "Offset",
    "AU",
    "Objective class",
    "emotion",
)
CASME3_CLIPS = (
    Clip("spNO.1", "b", 175, 178, 180, "disgust", "L4+L7"),
    Clip("spNO.1", "c", 30, 31, 33, "happy", "12"),
    Clip("spNO.2", "a", 8, 9, 11, "others", "1"),
    Clip("spNO.2", "d", 55, 57, 58, "surprise", "1+2"),
)


def build_casme3(root: Path, clips: Sequence[Clip] = CASME3_CLIPS) -> Path:
    """CAS(ME)^3 part A: sheet `label` (after another sheet) + `spNO.1/b/color/175.jpg`."""
    rows = [
        (c.subject, c.filename, c.onset, c.apex, c.offset, c.action_units, "I", c.emotion)
        for c in clips
    ]
    write_xlsx(root / CASME3_XLSX, CASME3_HEADER, rows, sheet="label", extra_sheets=("info",))
    for c in clips:
        write_frames(root / c.subject / c.filename / "color", clip_numbers(c), lambda n: f"{n}.jpg")
    return root


# --- MMEW --------------------------------------------------------------------------------------

MMEW_XLSX = "MMEW_Micro_Exp.xlsx"
MMEW_HEADER = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
    "remarks",
)
MMEW_CLIPS = (
    Clip("S01", "S01-01-001", 15, 17, 19, "happiness", "AU12"),
    Clip("S01", "S01-02-003", 4, 5, 7, "surprise", "AU1+AU2"),
    Clip("S02", "S02-01-001", 22, 23, 25, "others", "AU4"),
    Clip("S02", "S02-03-002", 9, 10, 12, "disgust", "AU9"),
)


def build_mmew(root: Path, clips: Sequence[Clip] = MMEW_CLIPS) -> Path:
    """MMEW: annotation sheet + `Micro_Expression/{emotion}/S01-01-001/15.jpg`."""
    rows = [
        (c.subject, c.filename, c.onset, c.apex, c.offset, c.action_units, c.emotion, "")
        for c in clips
    ]
    write_xlsx(root / MMEW_XLSX, MMEW_HEADER, rows)
    for c in clips:
        folder = root / "Micro_Expression" / c.emotion / c.filename
        write_frames(folder, clip_numbers(c), lambda n: f"{n}.jpg")
    return root


# --- MEGC2019 ----------------------------------------------------------------------------------


def build_megc2019(root: Path) -> Path:
    """The composite's convention: `CASME2/`, `SAMM/` and `SMIC/` side by side in `root`."""
    build_casme2(root / "CASME2")
    build_samm(root / "SAMM")
    build_smic(root / "SMIC")
    return root


FLOW_GT = "combined_3class_gt.csv"
FLOW_MAPS = "STSNet_whole_norm_u_v_os"
APEX_FOLDER = "apex"
# (db, subject as the csv writes it, filename, label); SAMM subjects unpadded as in the release
FLOW_ROWS = (
    ("casme2", "sub02", "EP01_11f", 0),
    ("casme2", "sub05", "EP02_01f", 1),
    ("samm", "6", "006_1_2", 0),
    ("samm", "6", "006_1_3", 1),
    ("samm", "7", "007_3_1", 2),
    ("smic", "s01", "s01_ne_01", 0),
    ("smic", "s01", "s01_po_01", 1),
    ("smic", "s02", "s02_sur_01", 2),
)


def flow_map_name(db: str, subject: str, filename: str) -> str:
    """The published map name: SAMM subject padded to 3 digits, a space before `.png`."""
    if db == "samm":
        subject = f"{int(subject):03d}"
    return f"{subject}_{filename} .png"


def build_megc2019_flow(
    root: Path,
    rows: Sequence[tuple] = FLOW_ROWS,
    missing: Sequence[int] = (),
    apex_faces: Sequence[int] | None = None,
) -> Path:
    """Flow-map format: headerless ground-truth CSV + a folder of 28x28 maps (none for the
    row indices in `missing`), and for the row indices in `apex_faces` an apex face
    `apex/{subject}_{filename}.jpg` (subjects named as the maps name them)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"{db},{subject},{filename},{label}\n" for db, subject, filename, label in rows]
    (root / FLOW_GT).write_text("".join(lines))
    for index, (db, subject, filename, _label) in enumerate(rows):
        name = flow_map_name(db, subject, filename)
        if index not in missing:
            write_image(root / FLOW_MAPS / name, size=MAP_SIZE)
        if index in (apex_faces or ()):
            write_face_image(root / APEX_FOLDER / name.replace(" .png", ".jpg"), seed=index)
    return root
