"""Dataset loaders on tiny fakes in the real layouts, their error paths, and the real flow maps."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from builders import (
    CASME2_CLIPS,
    CASME2_XLSX,
    CASME3_XLSX,
    FLOW_GT,
    FLOW_MAPS,
    SAMM_CLIPS,
    SAMM_XLSX,
    Clip,
    build_casme2,
    build_casme3,
    build_megc2019,
    build_megc2019_flow,
    build_mmew,
    build_samm,
    build_smic,
    write_image,
    write_xlsx,
)
from merkit.data.annotations import as_int
from merkit.data.files import frame_number, list_frames
from merkit.data.registry import list_datasets, load_dataset, register_dataset
from merkit.data.sample import APEX_ANNOTATED, APEX_MIDDLE
from merkit.errors import AnnotationError, DataLayoutError, LabelError

# --- shared helpers ----------------------------------------------------------------------------


def test_every_dataset_is_registered() -> None:
    names = {d.name for d in list_datasets()}
    assert names == {
        "casme2",
        "samm",
        "smic",
        "smic-hs",
        "smic-vis",
        "smic-nir",
        "casme3",
        "mmew",
        "megc2019",
        "megc2019-flow",
    }


def test_a_second_loader_under_a_registered_name_is_refused() -> None:
    """As for models: a duplicate name would silently replace the first loader."""
    before = {d.name: d.loader for d in list_datasets()}
    with pytest.raises(ValueError, match="dataset 'casme2' is already registered"):
        register_dataset("casme2", "another", "anything", ("all",))(lambda root, **_: None)
    assert {d.name: d.loader for d in list_datasets()} == before


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (46, 46),
        (46.0, 46),
        ("46", 46),
        (" 7 ", 7),
        ("/", None),
        ("", None),
        (None, None),
        (4.5, None),
    ],
)
def test_as_int_reads_numbers_and_rejects_the_rest(cell: object, expected: int | None) -> None:
    assert as_int(cell) == expected


def test_frames_are_listed_in_natural_numeric_order(tmp_path: Path) -> None:
    for name in ("img100.jpg", "img9.jpg", "img10.jpg", "notes.txt", "img99.jpg"):
        write_image(tmp_path / name) if name.endswith(".jpg") else (tmp_path / name).write_text("")
    frames, numbers = list_frames(tmp_path)
    assert numbers == (9, 10, 99, 100)
    assert [f.name for f in frames] == ["img9.jpg", "img10.jpg", "img99.jpg", "img100.jpg"]
    assert frame_number(Path("006_05562.jpg")) == 5562
    assert frame_number(Path("reg_image559740.bmp")) == 559740


def test_two_files_with_one_frame_number_are_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "006_0217.jpg")
    write_image(tmp_path / "006_00217.jpg")
    with pytest.raises(DataLayoutError, match="same number 217"):
        list_frames(tmp_path)


# --- CASME II ----------------------------------------------------------------------------------


def test_casme2_five_class_with_estimated_apex(tmp_path: Path) -> None:
    data = load_dataset("casme2", build_casme2(tmp_path))
    assert data.taxonomy == "5class"
    assert [s.uid for s in data] == [
        "casme2/sub01/EP02_01f",
        "casme2/sub01/EP03_02",
        "casme2/sub02/EP01_11f",
        "casme2/sub02/EP06_01f",
        "casme2/sub03/EP07_01",
    ]
    assert data.class_counts() == {
        "happiness": 1,
        "repression": 1,
        "disgust": 1,
        "surprise": 1,
        "others": 1,
    }
    # fear (row 7) and sadness (row 8) are not in the 5-class set: reported, not silent
    assert [(s.item, s.reason.split(":")[0]) for s in data.skipped] == [
        ("casme2/sub03/EP08_02", f"{CASME2_XLSX} row 7"),
        ("casme2/sub04/EP09_03", f"{CASME2_XLSX} row 8"),
    ]
    slash = data[1]
    assert (slash.onset, slash.apex, slash.offset, slash.apex_source) == (10, 12, 14, APEX_MIDDLE)
    assert any("row 3" in n and "'/'" in n and "12" in n for n in data.notes)
    assert data.apex_counts() == {APEX_ANNOTATED: 4, APEX_MIDDLE: 1}
    first = data[0]
    assert first.frame_numbers == (46, 47, 48, 49, 50)
    assert first.frames[first.frame_numbers.index(48)].name == "img48.jpg"
    assert first.path == tmp_path / "CASME2_RAW_selected" / "sub01" / "EP02_01f"
    assert (first.emotion, first.action_units, first.meta["fps"]) == ("happiness", "12", "200")
    assert data[4].frame_numbers == (97, 98, 99, 100, 101, 102, 103)


def test_casme2_blank_apex_and_other_taxonomies(tmp_path: Path) -> None:
    build_casme2(tmp_path)
    everything = load_dataset("casme2", tmp_path, "all")
    assert len(everything) == len(CASME2_CLIPS) == 7
    blank = next(s for s in everything if s.clip == "EP09_03")
    assert (blank.apex, blank.apex_source) == (7, APEX_MIDDLE)
    three = load_dataset("casme2", tmp_path, "3class")
    assert three.class_counts() == {"negative": 2, "positive": 1, "surprise": 1}
    assert {s.item for s in three.skipped} == {
        "casme2/sub02/EP06_01f",
        "casme2/sub03/EP08_02",
        "casme2/sub04/EP09_03",
    }


def test_casme2_cropped_release_is_detected(tmp_path: Path) -> None:
    data = load_dataset("casme2", build_casme2(tmp_path, frames="cropped"))
    assert data[0].frames[0].name == "reg_img46.jpg"
    assert data[0].frame_numbers == (46, 47, 48, 49, 50)
    with pytest.raises(DataLayoutError, match="CASME2_RAW_selected"):
        load_dataset("casme2", tmp_path, frames="raw")


def test_casme2_annotations_only_is_noted(tmp_path: Path) -> None:
    data = load_dataset("casme2", build_casme2(tmp_path, frames=None))
    assert len(data) == 5
    assert all(s.frames == () and s.path is None for s in data)
    assert any("annotations only" in n for n in data.notes)


def test_casme2_missing_clip_and_frame_outside_clip_are_skipped(tmp_path: Path) -> None:
    build_casme2(tmp_path)
    shutil.rmtree(tmp_path / "CASME2_RAW_selected" / "sub02" / "EP01_11f")
    (tmp_path / "CASME2_RAW_selected" / "sub01" / "EP02_01f" / "img46.jpg").unlink()
    data = load_dataset("casme2", tmp_path)
    reasons = {s.item: s.reason for s in data.skipped}
    assert "does not exist" in reasons["casme2/sub02/EP01_11f"]
    assert "onset 46 not among the frames (47..50)" in reasons["casme2/sub01/EP02_01f"]
    assert len(data) == 3


def test_casme2_duplicate_rows_are_reported(tmp_path: Path) -> None:
    build_casme2(tmp_path, clips=(*CASME2_CLIPS, CASME2_CLIPS[0]))
    data = load_dataset("casme2", tmp_path)
    assert len(data) == 5
    duplicate = [s for s in data.skipped if "duplicate" in s.reason]
    assert len(duplicate) == 1
    assert duplicate[0].item == "casme2/sub01/EP02_01f"
    assert "row 9" in duplicate[0].reason and "row 2" in duplicate[0].reason


# --- SAMM --------------------------------------------------------------------------------------


def test_samm_preamble_padding_and_subjects(tmp_path: Path) -> None:
    data = load_dataset("samm", build_samm(tmp_path))
    assert [s.uid for s in data] == ["samm/006/006_1_2", "samm/006/006_1_3", "samm/007/007_3_1"]
    assert data.class_counts() == {
        "anger": 1,
        "contempt": 0,
        "happiness": 1,
        "surprise": 0,
        "other": 1,
    }
    # the header sits on Excel row 14, so the fourth data row is row 18
    assert [(s.item, s.reason.split(":")[0]) for s in data.skipped] == [
        ("samm/007/007_5_2", f"{SAMM_XLSX} row 18")
    ]
    assert data[0].frames[0].name == "006_05562.jpg"
    assert data[0].frame_numbers == (5562, 5563, 5564, 5565, 5566)
    assert data[1].frames[0].name == "006_0217.jpg"
    assert data[1].frames[data[1].frame_numbers.index(219)].name == "006_0219.jpg"
    assert data[0].meta["micro"] == "Micro - 1/2"


def test_samm_root_holding_subject_folders(tmp_path: Path) -> None:
    build_samm(tmp_path, nested=False)
    data = load_dataset("samm", tmp_path, "3class")
    assert data.class_counts() == {"negative": 2, "positive": 1, "surprise": 0}
    assert data[0].path == tmp_path / "006" / "006_1_2"
    # the spreadsheet may also sit one level above a root that holds 006/ directly
    moved = tmp_path / "frames"
    moved.mkdir()
    for subject in ("006", "007"):
        shutil.move(tmp_path / subject, moved / subject)
    assert len(load_dataset("samm", moved, "3class")) == 3


# --- SMIC --------------------------------------------------------------------------------------


def test_smic_hs_megc_names_and_middle_apex(tmp_path: Path) -> None:
    data = load_dataset("smic-hs", build_smic(tmp_path))
    assert data.subjects == ["smic-hs/s01", "smic-hs/s02", "smic-hs/s10"]
    assert [s.clip for s in data] == ["s01_ne_01", "s01_po_01", "s02_sur_01", "s10_ne_02"]
    assert data.class_counts() == {"negative": 2, "positive": 1, "surprise": 1}
    first = data[0]
    assert (first.onset, first.apex, first.offset) == (559740, 559742, 559744)
    assert first.apex_source == APEX_MIDDLE
    assert first.meta == {"fps": "100", "folder": "s1_ne_01", "variant": "hs"}
    assert first.frames[0].name == "reg_image559740.bmp"
    non_micro = [s for s in data.skipped if s.item.endswith("non_micro")]
    assert len(non_micro) == 3 and "non-micro" in non_micro[0].reason


def test_smic_variants_and_raw_frames(tmp_path: Path) -> None:
    build_smic(tmp_path, variant="VIS", raw=True)
    data = load_dataset("smic-vis", tmp_path)
    assert len(data) == 4
    assert data[0].dataset == "smic-vis"
    assert data[0].meta["fps"] == "25"
    assert data[0].frames[0].name == "image559740.bmp"
    assert len(load_dataset("smic", tmp_path, variant="vis")) == 4
    with pytest.raises(DataLayoutError, match="no HS/ folder"):
        load_dataset("smic", tmp_path)


def test_smic_unknown_emotion_folder_names_the_folder(tmp_path: Path) -> None:
    build_smic(tmp_path, clips=(("s1", "anger", "s1_an_01", 3),))
    with pytest.raises(LabelError, match="anger"):
        load_dataset("smic-hs", tmp_path)


# --- CAS(ME)^3 and MMEW ------------------------------------------------------------------------


def test_casme3_reads_the_label_sheet(tmp_path: Path) -> None:
    data = load_dataset("casme3", build_casme3(tmp_path))
    assert data.taxonomy == "3class"
    assert [s.uid for s in data] == ["casme3/spNO.1/b", "casme3/spNO.1/c", "casme3/spNO.2/d"]
    assert data.class_counts() == {"negative": 1, "positive": 1, "surprise": 1}
    assert data[0].path == tmp_path / "spNO.1" / "b" / "color"
    assert data[0].frame_numbers == (175, 176, 177, 178, 179, 180)
    assert data[0].meta["fps"] == "30"
    assert len(load_dataset("casme3", tmp_path, "all")) == 4


def test_mmew_finds_clips_under_emotion_folders(tmp_path: Path) -> None:
    data = load_dataset("mmew", build_mmew(tmp_path))
    assert len(data) == 4
    assert data[0].path == tmp_path / "Micro_Expression" / "happiness" / "S01-01-001"
    assert data[0].frame_numbers == (15, 16, 17, 18, 19)
    three = load_dataset("mmew", tmp_path, "3class")
    assert three.class_counts() == {"negative": 1, "positive": 1, "surprise": 1}


# --- annotation errors -------------------------------------------------------------------------


def test_missing_column_is_named(tmp_path: Path) -> None:
    header = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units")
    write_xlsx(tmp_path / CASME2_XLSX, header, [(1, "EP02_01f", 46, 48, 50, "12")])
    with pytest.raises(AnnotationError, match=r"missing column\(s\) 'Estimated Emotion'") as info:
        load_dataset("casme2", tmp_path)
    assert CASME2_XLSX in str(info.value)


def test_unknown_emotion_names_file_and_excel_row(tmp_path: Path) -> None:
    clips = (*SAMM_CLIPS, Clip("008", "008_7_1", 1, 2, 3, "Boredom"))
    build_samm(tmp_path, clips=clips)
    with pytest.raises(LabelError) as info:
        load_dataset("samm", tmp_path)
    message = str(info.value)
    assert f"{SAMM_XLSX} row 19" in message and "'Boredom'" in message


def test_empty_spreadsheet(tmp_path: Path) -> None:
    write_xlsx(tmp_path / CASME2_XLSX, (), [])
    with pytest.raises(AnnotationError, match="empty"):
        load_dataset("casme2", tmp_path)


def test_header_without_rows(tmp_path: Path) -> None:
    build_casme2(tmp_path, clips=(), frames=None)
    with pytest.raises(AnnotationError, match="no data rows"):
        load_dataset("casme2", tmp_path)


def test_wrong_sheet_lists_the_sheets_present(tmp_path: Path) -> None:
    header = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "emotion")
    write_xlsx(tmp_path / CASME3_XLSX, header, [("spNO.1", "b", 1, 2, 3, "4", "happy")], "Sheet1")
    with pytest.raises(AnnotationError, match=r"no sheet named 'label' \(sheets present: Sheet1\)"):
        load_dataset("casme3", tmp_path)


def test_two_coding_sheets_are_not_guessed_between(tmp_path: Path) -> None:
    build_casme2(tmp_path)
    shutil.copy(tmp_path / CASME2_XLSX, tmp_path / "CASME2-coding-20190701.xlsx")
    with pytest.raises(AnnotationError, match="several CASME II coding sheets"):
        load_dataset("casme2", tmp_path)
    assert len(load_dataset("casme2", tmp_path, annotations=tmp_path / CASME2_XLSX)) == 5


def test_unreadable_and_absent_spreadsheets(tmp_path: Path) -> None:
    (tmp_path / CASME2_XLSX).write_bytes(b"not a zip file")
    with pytest.raises(AnnotationError, match="cannot read"):
        load_dataset("casme2", tmp_path)
    with pytest.raises(AnnotationError, match="no SAMM FACS code sheet found"):
        load_dataset("samm", tmp_path)


# --- MEGC2019 composite and flow maps ----------------------------------------------------------


def test_megc2019_composite_from_raw_releases(tmp_path: Path) -> None:
    data = load_dataset("megc2019", build_megc2019(tmp_path))
    assert data.class_names == ("negative", "positive", "surprise")
    per_db = Counter((s.dataset, data.class_names[s.label]) for s in data)
    assert per_db == {
        ("smic", "negative"): 2,
        ("smic", "positive"): 1,
        ("smic", "surprise"): 1,
        ("casme2", "negative"): 2,
        ("casme2", "positive"): 1,
        ("casme2", "surprise"): 1,
        ("samm", "negative"): 2,
        ("samm", "positive"): 1,
    }
    uids = {s.uid for s in data}
    assert {"smic/s01/s01_ne_01", "casme2/sub02/EP01_11f", "samm/006/006_1_2"} <= uids
    dropped = {s.item for s in data.skipped if "taxonomy" in s.reason}
    assert dropped == {
        "casme2/sub02/EP06_01f",
        "casme2/sub03/EP08_02",
        "casme2/sub04/EP09_03",
        "samm/007/007_3_1",
    }
    assert any(n.startswith("casme2: ") and "row 3" in n for n in data.notes)


def test_megc2019_needs_each_source(tmp_path: Path) -> None:
    build_casme2(tmp_path / "CASME2")
    build_smic(tmp_path / "SMIC")
    with pytest.raises(DataLayoutError, match="samm_root"):
        load_dataset("megc2019", tmp_path)
    build_samm(tmp_path / "elsewhere")
    assert len(load_dataset("megc2019", tmp_path, samm_root=tmp_path / "elsewhere")) == 11


def test_megc2019_cut_to_the_official_ground_truth(tmp_path: Path) -> None:
    build_megc2019(tmp_path / "raw")
    rows = [
        ("casme2", "sub02", "EP01_11f", 0),
        ("samm", "6", "006_1_2", 1),  # the sheet says anger (negative): the official file wins
        ("smic", "s01", "s01_ne_01", 0),
        ("casme2", "sub09", "EP01_01", 2),  # listed, not on disk
    ]
    gt = build_megc2019_flow(tmp_path / "gt", rows=rows) / FLOW_GT
    data = load_dataset("megc2019", tmp_path / "raw", gt=gt)
    assert [(s.uid, s.label) for s in data] == [
        ("smic/s01/s01_ne_01", 0),
        ("casme2/sub02/EP01_11f", 0),
        ("samm/006/006_1_2", 1),
    ]
    assert any(n.startswith(f"{FLOW_GT} row 2: label positive differs") for n in data.notes)
    reasons = {s.item: s.reason for s in data.skipped}
    assert reasons["casme2/sub09/EP01_01"].startswith(f"{FLOW_GT} row 4: listed")
    assert sum(r == f"not listed in {FLOW_GT}" for r in reasons.values()) == 8


def test_megc2019_flow_names_and_missing_maps(tmp_path: Path) -> None:
    build_megc2019_flow(tmp_path, missing=[1])
    write_image(tmp_path / FLOW_MAPS / "s09_s09_ne_01 .png")  # a map the csv does not list
    data = load_dataset("megc2019-flow", tmp_path)
    assert len(data) == 7
    samm = [s for s in data if s.dataset == "samm"]
    assert [s.subject for s in samm] == ["006", "006", "007"]
    assert samm[0].path == tmp_path / FLOW_MAPS / "006_006_1_2 .png"
    assert [(s.item, s.reason.split(":")[0]) for s in data.skipped] == [
        ("casme2/sub05/EP02_01f", f"{FLOW_GT} row 2")
    ]
    assert data.notes == [f"1 map(s) in {FLOW_MAPS}/ are not listed in {FLOW_GT}"]
    assert data.class_counts() == {"negative": 3, "positive": 2, "surprise": 2}


def test_megc2019_flow_bad_rows(tmp_path: Path) -> None:
    build_megc2019_flow(tmp_path, rows=[("samm", "6", "006_1_2", 3)])
    with pytest.raises(LabelError, match=f"{FLOW_GT} row 1: label '3'"):
        load_dataset("megc2019-flow", tmp_path)
    build_megc2019_flow(tmp_path, rows=[("casme", "sub01", "EP01", 0)])
    with pytest.raises(AnnotationError, match="unknown db 'casme'"):
        load_dataset("megc2019-flow", tmp_path)
    (tmp_path / FLOW_GT).write_text("")
    with pytest.raises(AnnotationError, match="empty"):
        load_dataset("megc2019-flow", tmp_path)


@pytest.mark.shared_data
def test_real_megc2019_flow_maps(megc2019_root: Path) -> None:
    data = load_dataset("megc2019-flow", megc2019_root)
    assert len(data) == 380
    assert len(data.subjects) == 58
    assert data.skipped == [] and data.notes == []
    per_db = Counter((s.dataset, data.class_names[s.label]) for s in data)
    assert per_db == {
        ("casme2", "negative"): 79,
        ("casme2", "positive"): 23,
        ("casme2", "surprise"): 24,
        ("samm", "negative"): 74,
        ("samm", "positive"): 26,
        ("samm", "surprise"): 13,
        ("smic", "negative"): 60,
        ("smic", "positive"): 46,
        ("smic", "surprise"): 35,
    }
    subjects = Counter(key.split("/")[0] for key in data.subjects)
    assert subjects == {"casme2": 20, "samm": 24, "smic": 14}
    assert all(s.path.is_file() for s in data)
