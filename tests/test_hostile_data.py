"""Hostile data and options: a 1-frame clip, clips dropped by `fit`, an apex policy that flow
maps cannot follow, a YAML alias bomb, seeds no generator takes. Each is skipped by name or
refused in one sentence (exit 2), and nothing is written where it should not be."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from builders import CASME2_CLIPS, Clip, build_casme2
from cli_helpers import run as cli
from cli_helpers import widen_consoles
from flowdata import write_flow_dataset
from merkit.inference.checkpoint import load_checkpoint
from test_hostile_input import _truncate, texture_clip

pytestmark = pytest.mark.usefixtures("one_thread")

ONE_FRAME = Clip(1, "EP02_01f", 46, 46, 46, "happiness", "12")  # onset = apex = offset
TRUNCATED = "casme2/sub02/EP01_11f"  # one of its frames is cut short
REASON = "has 1 frame from onset to offset (46); at least 2 are needed to see motion"


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)


def one_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def casme2(tmp_path: Path) -> Path:
    """The fake CASME II (cropped release, textured 48 px frames) with a 1-frame clip and a
    clip holding a truncated frame."""
    root = tmp_path / "casme2"
    build_casme2(root, (ONE_FRAME, *CASME2_CLIPS[1:]), frames="cropped")
    for folder in sorted((root / "Cropped").glob("sub*/*")):
        numbers = [int(p.stem.removeprefix("reg_img")) for p in folder.glob("reg_img*.jpg")]
        texture_clip(folder, sorted(numbers))
    _truncate(root / "Cropped" / "sub02" / "EP01_11f" / "reg_img3.jpg")
    return root


def test_prepare_skips_a_one_frame_clip_by_name(casme2: Path, tmp_path: Path, capsys) -> None:
    args = ["prepare", "casme2", str(casme2), "--flow", "dis", "--size", "16", "--workers", "1"]
    for policy in ("annotated", "spot"):
        cache = tmp_path / f"cache-{policy}"
        code, out, _ = cli([*args, "--crop-size", "32", "--cache", str(cache),
                            "--apex-policy", policy], capsys)  # fmt: skip
        lines = " ".join(out.split())
        assert code == 0 and f"casme2/sub01/EP02_01f {REASON}" in lines, (policy, out)


@pytest.mark.parametrize("policy", ["annotated", "spot"])
def test_fit_names_every_clip_it_dropped(casme2: Path, tmp_path: Path, capsys, policy) -> None:
    out = tmp_path / "m.pt"
    args = ["fit", "--data", "casme2", "--root", str(casme2), "--model", "ststnet",
            "--epochs", "1", "--flow", "dis", "--apex-policy", policy, "--out", str(out),
            "--quiet"]  # fmt: skip
    code, printed, err = cli(args, capsys)
    lines = " ".join(printed.split())
    assert code == 0 and "Traceback" not in err
    assert f"casme2/sub01/EP02_01f {REASON}" in lines
    assert f"{TRUNCATED} " in lines and "frame is a truncated JPEG" in lines
    assert "trained ststnet on 3 casme2 samples, 2 dropped (listed above)" in lines
    dropped = {f["sample"] for f in load_checkpoint(out)[1].failed}
    assert dropped == {"casme2/sub01/EP02_01f", TRUNCATED}


def test_fit_refuses_to_spot_apexes_in_flow_maps(tmp_path: Path, capsys) -> None:
    root = write_flow_dataset(tmp_path / "flow")
    out = tmp_path / "m.pt"
    args = ["fit", "--data", "megc2019-flow", "--root", str(root), "--model", "ststnet",
            "--epochs", "1", "--apex-policy", "spot", "--out", str(out), "--quiet"]  # fmt: skip
    code, _, err = cli(args, capsys)
    line = one_error(err)
    assert code == 2 and "apex_policy 'spot': the samples are published flow maps (e.g." in line
    assert not out.exists()
    code, _, err = cli(["prepare", "megc2019-flow", str(root), "--apex-policy", "spot"], capsys)
    assert code == 2 and "no frames to spot one in" in one_error(err)


def test_a_yaml_alias_bomb_is_refused_before_it_expands(
    casme2: Path, tmp_path: Path, capsys
) -> None:
    levels = ["    l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 12)]
    config = tmp_path / "bomb.yaml"
    config.write_text("recipe:\n  model: cabm\n  model_kwargs:\n" + "\n".join(levels) + "\n")
    started = time.perf_counter()
    args = ["train", "--config", str(config), "--data", "casme2", "--root", str(casme2)]
    code, _, err = cli([*args, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and time.perf_counter() - started < 5
    assert f"{config}: line 5 uses the YAML alias *l0; merkit reads no aliases" in one_error(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [("audit", "--seed", "-1"), ("fit", "--seed", "-1"), ("train", "--seeds", "0,4294967296")],
)
def test_seeds_no_generator_takes_are_refused_first(
    casme2: Path, tmp_path: Path, capsys, command: str, option: str, value: str
) -> None:
    out = tmp_path / ("m.pt" if command == "fit" else "run")
    args = [command, "--data", "casme2", "--root", str(casme2), "--model", "ststnet"]
    code, _, err = cli([*args, option, value, "--out", str(out), "--quiet"], capsys)
    line = one_error(err)
    assert code == 2 and "is not a seed; expected 0 to 4294967295" in line
    assert not out.exists()
