"""`merkit datasets` and `merkit inspect`, run through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builders import CASME2_XLSX, build_casme2, build_megc2019, write_xlsx
from cli_helpers import run, widen_consoles


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)


def test_datasets_lists_every_loader(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["datasets"], capsys)
    assert code == 0
    for name in ("casme2", "samm", "smic-hs", "casme3", "mmew", "megc2019", "megc2019-flow"):
        assert f" {name} " in out
    assert "SAMM_Micro_FACS_Codes_v2.xlsx" in out
    assert "all, 5class, 3class" in out


def test_inspect_reports_counts_problems_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_casme2(tmp_path / "casme2")
    target = tmp_path / "out" / "summary.json"
    code, out, _ = run(
        ["inspect", "casme2", str(tmp_path / "casme2"), "--json", str(target)], capsys
    )
    assert code == 0
    assert "row 3: apex '/' is not a frame number" in out
    assert "casme2/sub03/EP08_02" in out  # the fear clip the 5-class set drops
    summary = json.loads(target.read_text())
    assert (summary["samples"], summary["subjects"], summary["taxonomy"]) == (5, 3, "5class")
    assert summary["classes_per_taxonomy"] == {
        "5class": {"happiness": 1, "repression": 1, "disgust": 1, "surprise": 1, "others": 1},
        "all": {
            "happiness": 1,
            "surprise": 1,
            "disgust": 1,
            "repression": 1,
            "others": 1,
            "fear": 1,
            "sadness": 1,
        },
        "3class": {"negative": 2, "positive": 1, "surprise": 1},
    }
    assert summary["apex"] == {"annotated": 4, "estimated-middle": 1}
    assert len(summary["skipped"]) == 2


def test_inspect_composite_counts_per_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_megc2019(tmp_path)
    target = tmp_path / "megc.json"
    code, out, _ = run(["inspect", "megc2019", str(tmp_path), "--json", str(target)], capsys)
    assert code == 0
    assert "Classes per source" in out
    by_source = json.loads(target.read_text())["by_source"]
    assert by_source["samm"] == {
        "samples": 3,
        "subjects": 2,
        "classes": {"negative": 2, "positive": 1, "surprise": 0},
    }
    assert by_source["smic"]["subjects"] == 3


@pytest.mark.shared_data
def test_inspect_real_flow_maps(
    megc2019_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "flow.json"
    code, out, _ = run(
        ["inspect", "megc2019-flow", str(megc2019_root), "--json", str(target)], capsys
    )
    assert code == 0
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.strip()}
    assert rows["samples"] == "380" and rows["subjects"] == "58"  # plain rows: not a terminal
    summary = json.loads(target.read_text())
    assert (summary["samples"], summary["subjects"]) == (380, 58)
    assert summary["classes"] == {"negative": 213, "positive": 95, "surprise": 72}
    assert {k: v["samples"] for k, v in summary["by_source"].items()} == {
        "casme2": 126,
        "samm": 113,
        "smic": 141,
    }


def test_malformed_annotations_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_xlsx(tmp_path / CASME2_XLSX, ("Subject", "Filename"), [(1, "EP02_01f")])
    target = tmp_path / "summary.json"
    code, out, err = run(["inspect", "casme2", str(tmp_path), "--json", str(target)], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert CASME2_XLSX in lines[0] and "'OnsetFrame'" in lines[0]
    assert "Traceback" not in err + out
    assert not target.exists()


def test_loader_options_are_passed_and_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_casme2(tmp_path, frames="cropped")
    target = tmp_path / "summary.json"
    argv = ["inspect", "casme2", str(tmp_path), "-o", "frames=cropped", "--json", str(target)]
    assert run(argv, capsys)[0] == 0
    assert json.loads(target.read_text())["samples"] == 5
    code, _, err = run(["inspect", "casme2", str(tmp_path), "-o", "frames=raw"], capsys)
    assert code == 2 and "frames='raw' asked for" in err
    code, _, err = run(["inspect", "casme2", str(tmp_path), "-o", "variant=vis"], capsys)
    assert code == 2
    assert (
        "option 'variant=vis' is not valid for casme2 (options: annotations=..., frames=...)" in err
    )


def test_unknown_dataset_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["inspect", "casme9", str(tmp_path)], capsys)
    assert code == 2
    assert "unknown dataset 'casme9'" in err
