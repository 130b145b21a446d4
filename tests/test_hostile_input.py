"""Hostile input: broken files, odd sheets and paths, each met with one clear, located message.

Every case checks three things a user relies on: the message names the file/row/frame at
fault, the run skips or stops as asked (loaders skip a bad row and list it in
`SampleSet.skipped`, refuse an unusable file; `prepare` follows `on_error`), and nothing is
left half-written.
"""

from __future__ import annotations

import codecs
import os
import re
import signal
import zipfile
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from builders import (
    CASME2_CLIPS,
    CASME2_HEADER,
    CASME2_XLSX,
    FLOW_GT,
    FLOW_ROWS,
    SAMM_CLIPS,
    SAMM_HEADER,
    SAMM_PREAMBLE,
    SAMM_XLSX,
    build_casme2,
    build_casme3,
    build_megc2019_flow,
    build_mmew,
    build_samm,
    build_smic,
    write_xlsx,
)
from cli_helpers import run as cli
from cli_helpers import widen_consoles
from merkit.cli import main
from merkit.data.base import SampleSet
from merkit.data.registry import load_dataset
from merkit.data.sample import APEX_ANNOTATED, APEX_MIDDLE, Sample
from merkit.errors import AnnotationError, ConfigError, DataLayoutError, MerkitError
from merkit.preprocess.frames import ClipFrames, read_video
from merkit.preprocess.pipeline import PrepareConfig, Prepared, prepare

ROW2 = f"{CASME2_XLSX} row 2"  # the first data row (EP02_01f: onset 46, apex 48, offset 50)


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)


def casme2_rows(clips=CASME2_CLIPS) -> list[list[object]]:
    """The builder's CASME II rows as editable lists (column order of CASME2_HEADER)."""
    return [
        [c.subject, c.filename, i, c.onset, c.apex, c.offset, "", c.action_units, c.emotion]
        for i, c in enumerate(clips, start=1)
    ]


def casme2_with(root: Path, rows: list[list[object]], frames: str | None = "raw", **sheet) -> Path:
    """The fake CASME II release with its coding sheet replaced by `rows` (and `sheet` options)."""
    build_casme2(root, frames=frames)
    write_xlsx(root / CASME2_XLSX, sheet.pop("header", CASME2_HEADER), rows, **sheet)
    return root


def by_clip(data: SampleSet) -> dict[str, Sample]:
    return {s.clip: s for s in data}


def skipped(data: SampleSet) -> dict[str, str]:
    return {s.item: s.reason for s in data.skipped}


def consistent(data: SampleSet) -> bool:
    """The promise every loaded sample keeps: onset <= apex <= offset where they are known."""
    return all(
        s.onset is not None
        and s.apex is not None
        and s.onset <= s.apex
        and (s.offset is None or s.apex <= s.offset)
        for s in data
    )


# --- annotation cells --------------------------------------------------------------------------


def test_text_in_a_frame_cell_skips_that_row_only(tmp_path: Path) -> None:
    rows = casme2_rows()
    rows[0][3] = "forty-six"
    data = load_dataset("casme2", casme2_with(tmp_path, rows), "all")
    assert len(data) == 6 and "EP02_01f" not in by_clip(data)
    assert skipped(data) == {
        "casme2/sub01/EP02_01f": f"{ROW2}: onset 'forty-six' is not a frame number (>= 0)"
    }


def test_whole_float_frame_numbers_are_accepted_fractions_are_not(tmp_path: Path) -> None:
    rows = casme2_rows()
    rows[0][3:6] = [46.0, "48.0", 50.0]  # what a sheet re-saved through pandas holds
    rows[2][3] = 1.5
    data = load_dataset("casme2", casme2_with(tmp_path, rows), "all")
    sample = by_clip(data)["EP02_01f"]
    assert (sample.onset, sample.apex, sample.offset) == (46, 48, 50)
    assert type(sample.onset) is int and sample.apex_source == APEX_ANNOTATED
    assert skipped(data)["casme2/sub02/EP01_11f"].endswith(
        "onset '1.5' is not a frame number (>= 0)"
    )


def test_negative_and_huge_frame_numbers_are_not_frame_numbers(tmp_path: Path) -> None:
    # Annotations only (no frame folders), where nothing else would catch them. Before: a
    # negative onset was kept as is, and an onset of 1e30 produced a sample with onset > apex.
    rows = casme2_rows()
    rows[0][3] = -46
    rows[2][4] = -3  # EP01_11f's apex: estimated instead
    rows[4][3] = 10**30
    data = load_dataset("casme2", casme2_with(tmp_path, rows, frames=None), "all")
    reasons = skipped(data)
    assert reasons["casme2/sub01/EP02_01f"] == f"{ROW2}: onset '-46' is not a frame number (>= 0)"
    assert "onset '1000000000000000019884624838656'" in reasons["casme2/sub03/EP07_01"]
    ep01 = by_clip(data)["EP01_11f"]
    assert (ep01.apex, ep01.apex_source) == (3, APEX_MIDDLE)
    note = "apex '-3' is not a frame number; estimated as the middle frame 3 of 1..5"
    assert f"{CASME2_XLSX} row 4: {note}" in data.notes
    assert consistent(data)


def test_onset_after_offset_and_apex_outside_the_span(tmp_path: Path) -> None:
    # Before: apex 60 > offset 50 and apex 40 < onset were kept as "annotated" (silently
    # inconsistent samples). Now the apex is estimated and the row noted, or the row skipped.
    rows = casme2_rows()
    rows[0][4] = 60  # EP02_01f: apex after the offset
    rows[2][4] = 0  # EP01_11f: apex before the onset 1
    rows[4][3:6] = [103, 100, 97]  # EP07_01: onset and offset swapped, apex before onset
    data = load_dataset("casme2", casme2_with(tmp_path, rows, frames=None), "all")
    clips = by_clip(data)
    assert (clips["EP02_01f"].apex, clips["EP02_01f"].apex_source) == (48, APEX_MIDDLE)
    assert (clips["EP01_11f"].apex, clips["EP01_11f"].apex_source) == (3, APEX_MIDDLE)
    assert (
        f"{ROW2}: apex 60 follows offset 50; estimated as the middle frame 48 of 46..50"
        in data.notes
    )
    assert f"{CASME2_XLSX} row 6: offset 97 precedes onset 103; offset treated as unknown" in (
        data.notes
    )
    assert skipped(data)["casme2/sub03/EP07_01"] == (
        f"{CASME2_XLSX} row 6: apex 100 precedes onset 103 and the offset is unknown, "
        "so it cannot be estimated"
    )
    assert consistent(data)


def test_bad_subject_filename_and_emotion_cells_skip_their_row(tmp_path: Path) -> None:
    # Before: a blank or "1.5" subject stopped the whole load or became "sub15"; a blank
    # file name listed the subject folder itself; a blank emotion raised "unknown emotion nan".
    rows = casme2_rows()
    rows[0][0] = 1.5
    rows[1][0] = None
    rows[2][1] = ""
    rows[3][1] = "../../etc"
    rows[4][8] = None
    data = load_dataset("casme2", casme2_with(tmp_path, rows), "all")
    assert skipped(data) == {
        f"{ROW2}": f"{ROW2}: subject '1.5' is not one subject number",
        f"{CASME2_XLSX} row 3": f"{CASME2_XLSX} row 3: subject '' is not one subject number",
        "casme2/sub02/": f"{CASME2_XLSX} row 4: filename '' is not a folder name",
        "casme2/sub02/../../etc": f"{CASME2_XLSX} row 5: filename '../../etc' is not a folder name",
        "casme2/sub03/EP07_01": f"{CASME2_XLSX} row 6: the emotion cell is blank",
    }
    assert sorted(by_clip(data)) == ["EP08_02", "EP09_03"]


def test_empty_rows_trailing_spaces_and_duplicates(tmp_path: Path) -> None:
    rows = casme2_rows()
    rows[0][0], rows[0][1], rows[0][8] = " 1 ", "EP02_01f ", "Happiness  "
    rows.insert(3, [None] * 9)  # Excel rows 5 and 6 empty, in the middle
    rows.insert(4, ["", " ", None, "", None, "", None, "", " "])
    rows.append(list(casme2_rows()[0]))  # EP02_01f again, on Excel row 11
    data = load_dataset("casme2", casme2_with(tmp_path, rows), "all")
    ep02 = by_clip(data)["EP02_01f"]
    assert (ep02.subject, ep02.emotion, ep02.meta["row"]) == ("sub01", "happiness", ROW2)
    assert by_clip(data)["EP07_01"].meta["row"] == f"{CASME2_XLSX} row 8"  # numbers kept
    assert len(data) == 7
    assert skipped(data) == {
        "casme2/sub01/EP02_01f": f"{CASME2_XLSX} row 11: duplicate of the sample on {ROW2}"
    }


# --- columns, sheets and file formats ----------------------------------------------------------


def test_renamed_column_is_named_case_and_spacing_are_not_renames(tmp_path: Path) -> None:
    header = list(CASME2_HEADER)
    header[3] = "Onset"
    with pytest.raises(
        AnnotationError, match=r"missing column\(s\) 'OnsetFrame' in the header on row 1"
    ) as info:
        load_dataset("casme2", casme2_with(tmp_path / "a", casme2_rows(), header=header))
    assert CASME2_XLSX in str(info.value)
    header[3], header[8] = "  onsetframe ", "ESTIMATED  EMOTION"
    assert (
        len(load_dataset("casme2", casme2_with(tmp_path / "b", casme2_rows(), header=header))) == 5
    )


def test_a_column_given_twice_is_refused_not_guessed(tmp_path: Path) -> None:
    header = [*CASME2_HEADER[:6], "OnsetFrame", *CASME2_HEADER[7:]]  # blank column 7 named too
    with pytest.raises(
        AnnotationError, match="column 'OnsetFrame' appears 2 times in the header on row 1"
    ):
        load_dataset("casme2", casme2_with(tmp_path, casme2_rows(), header=header))


def test_the_annotation_sheet_is_found_behind_other_sheets(tmp_path: Path) -> None:
    # Before: only the first sheet was read ("no header row with the expected columns").
    root = casme2_with(tmp_path, casme2_rows(), extra_sheets=("Read me", "Pivot"))
    data = load_dataset("casme2", root, "all")
    assert len(data) == 7 and data.skipped == []


def test_samm_header_is_searched_in_the_first_rows_only(tmp_path: Path) -> None:
    build_samm(tmp_path)
    rows = [
        (c.subject, c.filename, 1, c.onset, c.apex, c.offset, 5, "Micro", c.action_units, c.emotion)
        for c in SAMM_CLIPS
    ]
    write_xlsx(tmp_path / SAMM_XLSX, SAMM_HEADER, rows, preamble=[f"line {i}" for i in range(40)])
    with pytest.raises(
        AnnotationError, match="no header row with the expected columns .* in its first 30 rows"
    ):
        load_dataset("samm", tmp_path)
    write_xlsx(tmp_path / SAMM_XLSX, SAMM_HEADER, rows, preamble=SAMM_PREAMBLE[:5])
    assert len(load_dataset("samm", tmp_path, "all")) == 4


def _csv_text(rows: list[list[object]]) -> str:
    lines = [CASME2_HEADER, *rows]
    return "".join(",".join("" if v is None else str(v) for v in line) + "\r\n" for line in lines)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "utf-16"])
def test_coding_sheet_saved_as_csv_in_any_encoding(tmp_path: Path, encoding: str) -> None:
    # Before: a re-saved sheet was not found ("no CASME II coding sheet found").
    build_casme2(tmp_path)
    rows = casme2_rows()
    rows[5][7] = "AU4 – frown"  # an en dash: differs between cp1252 and UTF-8
    (tmp_path / CASME2_XLSX).unlink()
    path = tmp_path / "CASME2-coding-20140508.csv"
    path.write_bytes(_csv_text(rows).encode(encoding))
    data = load_dataset("casme2", tmp_path, "all")
    assert len(data) == 7 and by_clip(data)["EP08_02"].action_units == "AU4 – frown"
    assert by_clip(data)["EP02_01f"].meta["row"] == "CASME2-coding-20140508.csv row 2"


def test_sheet_as_xlsx_and_csv_side_by_side_is_not_guessed_between(tmp_path: Path) -> None:
    build_casme2(tmp_path)
    (tmp_path / "CASME2-coding-20140508.csv").write_text(_csv_text(casme2_rows()))
    with pytest.raises(AnnotationError, match="several CASME II coding sheets"):
        load_dataset("casme2", tmp_path)


def _zip_without_workbook(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"<html><body><table><tr><td>Subject</td></tr></table></body></html>", "holds HTML/XML"),
        (
            b"Subject,Filename,OnsetFrame\n1,EP02_01f,46\n",
            "holds plain text; if that is CSV, rename",
        ),
        (b"", "the file is empty"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), "an old .xls workbook"),
        (bytes(range(256)) * 4, "not a zip archive"),
        (None, "\\[Content_Types\\].xml"),
    ],
    ids=["html", "csv-text", "empty", "xls", "random-bytes", "zip-garbage"],
)
def test_a_file_named_xlsx_that_is_not_a_workbook(tmp_path: Path, content, reason: str) -> None:
    build_casme2(tmp_path)
    path = tmp_path / CASME2_XLSX
    if content is None:
        _zip_without_workbook(path)
    else:
        path.write_bytes(content)
    with pytest.raises(
        AnnotationError, match=f"{CASME2_XLSX}: cannot read as an .xlsx spreadsheet .*{reason}"
    ):
        load_dataset("casme2", tmp_path)


# --- the MEGC ground truth (headerless CSV) ----------------------------------------------------


def _gt_lines(extra: str = "") -> str:
    return "".join(f"{db},{s},{f},{label}\n" for db, s, f, label in FLOW_ROWS) + extra


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
        lambda t: t.encode("latin-1"),
        lambda t: t.encode("utf-16"),
        lambda t: t.replace("\n", "\r\n").encode("utf-8"),
    ],
    ids=["utf8-bom", "latin1", "utf16", "crlf"],
)
def test_ground_truth_in_other_encodings(tmp_path: Path, encode) -> None:
    # Before: latin-1 and UTF-16 raised "cannot read as CSV ('utf-8' codec can't decode ...)".
    root = build_megc2019_flow(tmp_path)
    (root / FLOW_GT).write_bytes(encode(_gt_lines("smic,s01,s01_né_01,0\n")))
    data = load_dataset("megc2019-flow", root)
    assert len(data) == 8
    reason = f"{FLOW_GT} row 9: no map 's01_s01_né_01 .png' in STSNet_whole_norm_u_v_os/"
    assert skipped(data) == {"smic/s01/s01_né_01": reason}


def test_ground_truth_header_blank_lines_and_float_labels(tmp_path: Path) -> None:
    root = build_megc2019_flow(tmp_path)
    text = "db,subject,filename,label\n\n" + _gt_lines().replace(",2\n", ",2.0\n") + ",,,\n"
    (root / FLOW_GT).write_text(text)
    data = load_dataset("megc2019-flow", root)
    assert data.class_counts() == {"negative": 3, "positive": 3, "surprise": 2}
    assert data[0].meta["row"] == f"{FLOW_GT} row 3"  # line numbers of the file as written


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "smic,s01,s01_ne_09,0,extra\n",
            f"{FLOW_GT} row 9: expected 4 fields \\(db,subject,filename,label\\), found 5",
        ),
        ("smic,,s01_ne_09,0\n", f"{FLOW_GT} row 9: subject '' is not one subject number"),
        (
            "smic,s01,../../etc/passwd,0\n",
            f"{FLOW_GT} row 9: filename '../../etc/passwd' is not a clip name",
        ),
        ('smic,s01,"s01_ne_09,0\n', "cannot read as CSV"),
        ("smic,s01,s01_ne_09,1.5\n", f"{FLOW_GT} row 9: label '1.5' is not 0, 1 or 2"),
    ],
    ids=["five-fields", "blank-subject", "path-as-filename", "open-quote", "fractional-label"],
)
def test_a_bad_ground_truth_line_refuses_the_file(tmp_path: Path, extra: str, message: str) -> None:
    root = build_megc2019_flow(tmp_path)
    (root / FLOW_GT).write_text(_gt_lines(extra))
    with pytest.raises(AnnotationError, match=message):
        load_dataset("megc2019-flow", root)


def test_binary_ground_truth_is_refused(tmp_path: Path) -> None:
    root = build_megc2019_flow(tmp_path)
    (root / FLOW_GT).write_bytes(bytes(range(256)))
    with pytest.raises(AnnotationError, match=f"{FLOW_GT}: holds binary data"):
        load_dataset("megc2019-flow", root)


# --- paths -------------------------------------------------------------------------------------


def test_unicode_root_with_spaces_through_the_cli(tmp_path: Path, capsys) -> None:
    root = build_casme2(tmp_path / "Dätä sets" / "CASME II")
    assert len(load_dataset("casme2", root, "all")) == 7
    target = tmp_path / "résumé dir" / "summary ü.json"
    main(["inspect", "casme2", str(root), "--json", str(target)])
    assert "wrote" in capsys.readouterr().err
    assert '"samples": 5' in target.read_text(encoding="utf-8")


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fail (instead of hanging the suite) if the test takes more than 20 s."""

    def expire(*_):
        raise TimeoutError("listing did not finish: a symlink loop was followed")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_symlink_loops_do_not_hang_or_recurse(tmp_path: Path, deadline: None) -> None:
    casme2 = build_casme2(tmp_path / "casme2")
    clip = casme2 / "CASME2_RAW_selected" / "sub01" / "EP02_01f"
    (clip / "loop").symlink_to(clip)  # a folder linking to itself
    (clip / "img999.jpg").symlink_to(clip / "img999.jpg")  # a file linking to itself
    (casme2 / "wrap").symlink_to(casme2)
    data = load_dataset("casme2", casme2, "all")
    assert by_clip(data)["EP02_01f"].frame_numbers == (46, 47, 48, 49, 50)

    smic = build_smic(tmp_path / "smic")
    negative = smic / "SMIC_all_cropped" / "HS" / "s1" / "micro" / "negative"
    (negative / "s1_ne_99").symlink_to(negative)
    data = load_dataset("smic", smic)
    assert len(data) == 4
    assert "holds no numbered image" in skipped(data)["smic-hs/s01/s01_ne_99"]

    for name, build in (("samm", build_samm), ("mmew", build_mmew), ("casme3", build_casme3)):
        root = build(tmp_path / name)
        (root / "loop").symlink_to(root)
        (root / "loop2").symlink_to(root / "loop")
        assert len(load_dataset(name, root, "all")) == 4


LOADERS = ["casme2", "samm", "smic", "casme3", "mmew", "megc2019", "megc2019-flow"]


@pytest.mark.parametrize("name", LOADERS)
def test_a_root_that_is_a_file(tmp_path: Path, name: str) -> None:
    # Before: smic raised NotADirectoryError; the others said no annotation file was found.
    root = tmp_path / "release.zip"
    root.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataLayoutError, match=rf"{root}.*(is a file|not found)"):
        load_dataset(name, root)


def _deny(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    """Make `denied` unreadable even for root (chmod does not stop root)."""
    iterdir, read_bytes = Path.iterdir, Path.read_bytes

    def guarded_iterdir(self: Path):
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return iterdir(self)

    def guarded_read(self: Path) -> bytes:
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "iterdir", guarded_iterdir)
    monkeypatch.setattr(Path, "read_bytes", guarded_read)


def test_unreadable_folders_and_files_are_named(tmp_path: Path, monkeypatch) -> None:
    root = build_casme2(tmp_path / "casme2")
    clip = root / "CASME2_RAW_selected" / "sub01" / "EP02_01f"
    with monkeypatch.context() as patch:
        _deny(patch, clip)
        data = load_dataset("casme2", root, "all")
        assert skipped(data)["casme2/sub01/EP02_01f"] == (
            f"{ROW2}: {clip}: cannot list the folder (Permission denied)"
        )
    with monkeypatch.context() as patch:
        _deny(patch, root / CASME2_XLSX)
        with pytest.raises(
            AnnotationError, match=f"{CASME2_XLSX}: cannot read the file \\(Permission denied\\)"
        ):
            load_dataset("casme2", root)
    with monkeypatch.context() as patch:
        _deny(patch, root)
        with pytest.raises(DataLayoutError, match=f"{root}: cannot list the folder"):
            load_dataset("casme2", root)
    frame = clip / "img48.jpg"
    with monkeypatch.context() as patch:
        _deny(patch, frame)
        with pytest.raises(
            DataLayoutError, match=f"{frame}: frame cannot be read \\(Permission denied\\)"
        ):
            ClipFrames(by_clip(load_dataset("casme2", root, "all"))["EP02_01f"]).read([48])


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root reads files despite chmod 000"
)
def test_unreadable_permissions_for_real(tmp_path: Path) -> None:
    root = build_casme2(tmp_path / "casme2")
    (root / CASME2_XLSX).chmod(0)
    try:
        with pytest.raises(AnnotationError, match="Permission denied"):
            load_dataset("casme2", root)
    finally:
        (root / CASME2_XLSX).chmod(0o644)


# --- frames and videos in `prepare` ------------------------------------------------------------


def texture_clip(folder: Path, numbers, size: int = 48, prefix: str = "reg_img") -> Sample:
    """A cropped-release clip (reg_img*: no face detection) of textured frames, apex mid-way."""
    rng = np.random.default_rng(len(numbers))
    base = cv2.GaussianBlur(rng.integers(0, 255, (size, size), dtype=np.uint8), (5, 5), 0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, n in enumerate(numbers):
        path = folder / f"{prefix}{n}.jpg"
        assert cv2.imwrite(str(path), np.roll(base, i % 3, axis=0))
        paths.append(path)
    numbers = tuple(numbers)
    return Sample(
        "toy",
        "sub01",
        folder.name,
        folder,
        "happiness",
        0,
        numbers[0],
        numbers[len(numbers) // 2],
        numbers[-1],
        APEX_ANNOTATED,
        frames=tuple(paths),
        frame_numbers=numbers,
    )


FAST = PrepareConfig(flow="dis", size=16, crop_size=32)


def run_prepare(samples, config: PrepareConfig = FAST, **kwargs) -> Prepared:
    return prepare(samples, config, workers=1, progress=False, **kwargs)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (
            _truncate,
            "frame is a truncated JPEG \\(no end marker\\)",
        ),  # before: decoded grey, no error
        (lambda p: p.write_bytes(b""), "frame is an empty \\(0-byte\\) file"),
        (lambda p: p.write_text("this is a text file"), "frame cannot be decoded \\(corrupt\\?\\)"),
    ],
    ids=["truncated-jpeg", "zero-bytes", "text-as-jpg"],
)
def test_corrupt_frame_fails_its_clip_only_or_stops(tmp_path: Path, damage, reason: str) -> None:
    good = texture_clip(tmp_path / "EP01", range(10, 15))
    bad = texture_clip(tmp_path / "EP02", range(10, 15))
    damage(bad.frames[2])  # the apex, frame 12
    prepared = run_prepare([bad, good])
    assert [s.uid for s in prepared.samples] == [good.uid] and prepared.x.shape == (1, 3, 16, 16)
    ((uid, message),) = prepared.failed
    assert uid == bad.uid and message.startswith(f"{bad.frames[2]}: ")
    assert re.search(reason, message)
    with pytest.raises(DataLayoutError, match=reason):
        run_prepare([bad, good], on_error="stop")


def test_truncated_jpeg_tail_padding_is_still_accepted(tmp_path: Path) -> None:
    sample = texture_clip(tmp_path / "EP01", range(1, 4))
    with sample.frames[1].open("ab") as handle:
        handle.write(bytes(64))  # bytes after the end marker, as some cameras write
    assert run_prepare([sample]).failed == []


def test_frames_of_different_sizes_within_one_clip(tmp_path: Path) -> None:
    # Before: "maps" and "apex" outputs read the onset and the apex in separate calls and
    # warped both with the onset's alignment, silently; only "sequence" output noticed.
    sample = texture_clip(tmp_path / "EP01", range(1, 6))
    cv2.imwrite(str(sample.frames[2]), np.zeros((40, 56), np.uint8))  # the apex, frame 3
    expected = f"{sample.frames[2]}: frame size 56x40 differs from 48x48 of reg_img1.jpg"
    for output in ("maps", "sequence", "apex"):
        config = PrepareConfig(output=output, flow="dis", size=16, crop_size=32, frames=5)
        ((uid, message),) = run_prepare([sample], config).failed
        assert uid == sample.uid and message.startswith(expected), output


def test_a_gap_in_the_frame_numbers(tmp_path: Path) -> None:
    build_casme2(tmp_path / "casme2")
    clip = tmp_path / "casme2" / "CASME2_RAW_selected" / "sub01" / "EP02_01f"
    (clip / "img48.jpg").unlink()
    (clip / "img47.jpg").unlink()
    data = load_dataset("casme2", tmp_path / "casme2", "all")
    assert (
        f"{ROW2}: apex 48 not among the frames (46..50)" in skipped(data)["casme2/sub01/EP02_01f"]
    )

    sample = texture_clip(tmp_path / "EP01", [10, 11, 12, 14, 15])  # 13 missing; apex 12
    assert run_prepare([sample]).failed == []  # onset->apex flow never reads frame 13
    for config, use in (
        (PrepareConfig(output="sequence", size=16, crop_size=32, frames=5), "a frame sequence"),
        (PrepareConfig(flow="dis", size=16, crop_size=32, apex_policy="spot"), "apex spotting"),
    ):
        assert run_prepare([sample], config).failed == [
            (
                sample.uid,
                f"{sample.path}: frame(s) 13 missing between 10 and 15 of {sample.uid}; "
                f"{use} needs every frame",
            )
        ]


def test_gaps_are_noted_when_loading(tmp_path: Path) -> None:
    root = build_casme2(tmp_path)
    (root / "CASME2_RAW_selected" / "sub01" / "EP02_01f" / "img49.jpg").unlink()
    data = load_dataset("casme2", root, "all")
    assert len(data) == 7
    folder = root / "CASME2_RAW_selected" / "sub01" / "EP02_01f"
    assert f"{ROW2}: 1 frame(s) missing between 46 and 50 in {folder}" in data.notes


def test_tiny_images_are_refused_not_blown_up(tmp_path: Path) -> None:
    # Before: 8x8 frames were enlarged 16x into the 128 px crop and "prepared" without a word.
    tiny = texture_clip(tmp_path / "EP01", range(1, 4), size=8)
    config = PrepareConfig(flow="dis", size=16)  # crop_size 128
    ((uid, message),) = run_prepare([tiny], config).failed
    assert uid == tiny.uid and message == (
        f"{tiny.path}: the face in frame 1 of {tiny.uid} is about 8 px across, too small for "
        "the 128 px face crop (more than 4x enlargement); use larger frames or a smaller crop_size"
    )
    assert run_prepare([tiny], PrepareConfig(flow="dis", size=16, crop_size=32)).failed == []


def _write_video(path: Path, count: int = 40, options: dict | None = None) -> Path:
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(count):
            image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.6])
def test_truncated_video_is_refused(tmp_path: Path, keep: float) -> None:
    # A "faststart" MP4 (index first) cut short: before, the first frames decoded and the rest
    # vanished without a word.
    video = _write_video(tmp_path / "clip.mp4", options={"movflags": "faststart"})
    assert read_video(video).shape == (40, 32, 32)
    data = video.read_bytes()
    video.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(
        DataLayoutError,
        match=f"{video}: (video is truncated or damaged: \\d+ of the 40 frames|no video frames)",
    ):
        read_video(video)
    failed = run_prepare([Sample("toy", "s1", "clip", video, "x", 0)]).failed
    assert failed[0][0] == "toy/s1/clip" and str(video) in failed[0][1]


# --- the CLI: exit codes, messages, no partial output ------------------------------------------


def _cropped_casme2(root: Path) -> Path:
    """The fake CASME II, cropped release, with 48 px textured frames instead of 8 px ones."""
    build_casme2(root, frames="cropped")
    for folder in sorted((root / "Cropped").glob("sub*/*")):
        frames = sorted(folder.glob("reg_img*.jpg"))
        numbers = [int(p.stem.removeprefix("reg_img")) for p in frames]
        texture_clip(folder, numbers)
    return root


def test_prepare_cli_skip_and_stop_on_a_corrupt_frame(tmp_path: Path, capsys) -> None:
    root = _cropped_casme2(tmp_path / "Dätä sets" / "CASME II")
    bad = root / "Cropped" / "sub01" / "EP02_01f" / "reg_img48.jpg"
    _truncate(bad)
    base = ["prepare", "casme2", str(root), "--flow", "dis", "--size", "16", "--crop-size", "32"]
    base += ["--workers", "1"]
    code, out, err = cli([*base, "--cache", str(tmp_path / "stop"), "--on-error", "stop"], capsys)
    assert code == 2 and out == ""
    reason = "frame is a truncated JPEG (no end marker); expected a readable jpg/bmp/png image"
    assert err.strip() == f"error: {bad}: {reason}"
    leftovers = [
        p.name for p in (tmp_path / "stop").rglob("*") if p.is_file() and p.suffix != ".npz"
    ]
    assert leftovers == []  # no temp files; the clips finished before the error stay cached

    maps = tmp_path / "maps"
    code, out, _ = cli(
        [*base, "--cache", str(tmp_path / "skip"), "--export-maps", str(maps)], capsys
    )
    assert code == 0
    assert "casme2/sub01/EP02_01f" in out and "frame is a truncated JPEG" in out
    assert sorted(p.name for p in maps.iterdir()) == [
        "sub01_EP03_02 .png",
        "sub02_EP01_11f .png",
        "sub02_EP06_01f .png",
        "sub03_EP07_01 .png",
    ]


def test_prepare_cli_bad_options_fail_before_any_work(tmp_path: Path, capsys) -> None:
    root = tmp_path / "not a dataset"
    code, _, err = cli(["prepare", "casme2", str(root), "--on-error", "ignore"], capsys)
    assert code == 2 and "--on-error 'ignore': choose one of skip, stop" in err
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should go")
    root = build_casme2(tmp_path / "casme2")
    code, _, err = cli(["prepare", "casme2", str(root), "--cache", str(cache)], capsys)
    assert code == 2 and f"{cache}: the cache folder is a file; give a folder" in err


def test_inspect_cli_on_broken_input(tmp_path: Path, capsys) -> None:
    root = build_casme2(tmp_path / "casme2")
    (root / CASME2_XLSX).write_text("<html>saved from a browser</html>")
    code, out, err = cli(["inspect", "casme2", str(root)], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{CASME2_XLSX}: cannot read as an .xlsx spreadsheet (it holds HTML/XML" in err
    build_casme2(root)
    (tmp_path / "out").mkdir()
    code, _, err = cli(["inspect", "casme2", str(root), "--json", str(tmp_path / "out")], capsys)
    assert code == 2 and "exists and is a folder; the output must be a file" in err
    assert list((tmp_path / "out").iterdir()) == []
    smic_root = tmp_path / "smic.txt"
    smic_root.write_text("x")
    code, _, err = cli(["inspect", "smic", str(smic_root)], capsys)
    assert code == 2 and f"{smic_root}: is a file" in err


# --- unsafe deserialisation ----------------------------------------------------------------------

EVIL_YAML = "data:\n  name: !!python/object/apply:os.system ['touch {marker}']\n"


def test_yaml_config_with_python_tags_is_refused(tmp_path: Path) -> None:
    config = pytest.importorskip("merkit.training.config")
    marker = tmp_path / "pwned"
    path = tmp_path / "experiment.yaml"
    path.write_text(EVIL_YAML.format(marker=marker))
    with pytest.raises(ConfigError, match=f"{path}: not valid YAML"):
        config.build_experiment(path)
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.read_config_file(path)
    assert not marker.exists()


def test_run_file_with_python_tags_is_refused_with_a_message(tmp_path: Path) -> None:
    run_folder = pytest.importorskip("merkit.evaluation.run_folder")
    marker = tmp_path / "pwned"
    (tmp_path / run_folder.RUN_FILE).write_text(EVIL_YAML.format(marker=marker))
    try:
        with pytest.raises(MerkitError):
            run_folder.RunFolder(tmp_path).read_meta()
    finally:
        assert not marker.exists()
