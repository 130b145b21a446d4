"""Faults a hostile user finds: diverging recipes, unwritable outputs, repeated rows, untrusted
checkpoints, paths with square brackets. Each ends in one sentence and exit 2, writes nothing
wrong, and leaves no folder locked."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cli_helpers import run as cli
from cli_helpers import widen_consoles
from flowdata import write_flow_dataset
from merkit.errors import DataLayoutError, TrainingDiverged
from merkit.inference.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint
from merkit.io import check_writable
from merkit.preprocess.flowmaps import read_flow_map
from merkit.training.engine import fit_predict
from merkit.training.recipe import Recipe

TINY = "{dim: 8, depth: 1, kernel: 3, patch: 4}"


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    return write_flow_dataset(tmp_path / "flow")


def one_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_diverging_fold_stops_with_its_subject_and_epoch() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((24, 3, 28, 28), dtype=np.float32), np.arange(24) % 3
    groups = np.repeat(["a", "b", "c", "d", "e", "f"], 4)
    folds = [(np.flatnonzero(groups != "b"), np.flatnonzero(groups == "b"))]
    recipe = Recipe(model="ststnet", lr=1e8, epochs=2, batch_size=8)
    with pytest.raises(TrainingDiverged, match="fold testing subject b, epoch [12]"):
        fit_predict(recipe, x, y, folds, 3, groups=groups)
    sane = fit_predict(
        Recipe(model="ststnet", epochs=1, batch_size=8), x, y, folds, 3, groups=groups
    )
    assert np.isfinite(sane[0]).all()


def test_a_diverged_run_writes_no_predictions_and_does_not_lock_its_folder(
    flow: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "run"
    calls = []

    def diverge(*args, **kwargs):
        calls.append(1)
        raise TrainingDiverged("cabm", "the fold testing subject sub01", 3, 1e4)

    from merkit.training.engine import TorchEngine

    monkeypatch.setattr(TorchEngine, "fit_predict", staticmethod(diverge))
    args = ["train", "--data", "megc2019-flow", "--root", str(flow), "--out", str(out), "--quiet"]
    code, _, err = cli([*args, "--epochs", "1"], capsys)
    assert code == 2 and calls
    assert "training diverged in the fold testing subject sub01, epoch 3" in one_error(err)
    assert not (out / "predictions.csv").exists() and not (out / "folds").exists()
    monkeypatch.undo()
    widen_consoles(monkeypatch)
    config = tmp_path / "tiny.yaml"
    config.write_text(f"recipe: {{model: cabm, epochs: 1, model_kwargs: {TINY}}}\n")
    code, out_text, err = cli([*args, "--config", str(config)], capsys)
    assert code == 0, err  # a corrected config may reuse the folder of a run that never finished
    assert (out / "predictions.csv").is_file()


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ("{lr: -0.5}", "lr must be > 0, got -0.5"),
        ("{lr: .inf}", "must be finite"),
        ("{batch_size: 0}", "batch_size must be >= 1, got 0"),
        ("{label_smoothing: 1.5}", "label_smoothing must be in [0, 1)"),
    ],
)
def test_recipes_no_training_can_use_fail_before_the_folder_is_claimed(
    flow: Path, tmp_path: Path, capsys, recipe: str, message: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"recipe: {recipe}\n")
    out = tmp_path / "run"
    args = ["train", "--data", "megc2019-flow", "--root", str(flow), "--config", str(config)]
    code, _, err = cli([*args, "--out", str(out), "--quiet"], capsys)
    assert code == 2 and message in one_error(err)
    assert not out.exists()


def test_unknown_loader_option_and_bad_audit_k(flow: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "opt.yaml"
    config.write_text(f"data: {{name: megc2019-flow, root: {flow}, options: {{foo: 1}}}}\n")
    code, _, err = cli(["train", "--config", str(config), "--out", str(tmp_path / "r")], capsys)
    assert (
        code == 2 and "unknown loader option 'foo' (its options: taxonomy, gt, maps, apex)" in err
    )
    audit = ["audit", "--data", "megc2019-flow", "--root", str(flow), "--quiet"]
    for k, message in (("1", "at least 2 folds"), ("100", "more folds than the 24 prepared")):
        code, _, err = cli([*audit, "--k", k, "--out", str(tmp_path / f"a{k}")], capsys)
        assert code == 2 and message in one_error(err)
        assert not (tmp_path / f"a{k}").exists()


def test_outputs_that_cannot_be_written_are_named_before_any_work(
    flow: Path, tmp_path: Path, capsys
) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("dataset,subject,sample,true,predicted\nc,s,a,0,0\nc,s,b,1,1\n")
    data = ["--data", "megc2019-flow", "--root", str(flow)]
    cases = [
        (["train", *data, "--out", str(blocker)], "exists and is a file"),
        (["train", *data, "--out", str(blocker / "run")], "afile is a file, not a folder"),
        (["score", str(csv_path), "--out", str(blocker / "m.json")], "afile is a file"),
        (["fit", *data, "--out", str(blocker / "m.pt")], "afile is a file"),
        (["report", str(tmp_path), str(tmp_path), "--out", str(blocker)], "exists and is a file"),
        (
            ["predict", str(tmp_path / "m.pt"), str(flow), "--json", str(blocker / "o.json")],
            "afile",
        ),
        (["export", str(tmp_path / "m.pt"), "--onnx", str(tmp_path)], "is a folder"),
    ]
    for argv, message in cases:
        code, _, err = cli(argv, capsys)
        assert code == 2 and message in one_error(err), (argv, err)


def test_read_only_folder_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("merkit.io.os.access", lambda path, mode: False)
    with pytest.raises(Exception, match="is read-only"):
        check_writable(tmp_path / "out")


def test_score_refuses_repeated_rows_classes_and_unreadable_logs(tmp_path: Path, capsys) -> None:
    table = tmp_path / "dup.csv"
    table.write_text("dataset,subject,sample,true,predicted\nc,s,a,0,0\nc,s,b,1,1\nc,s,a,0,0\n")
    code, _, err = cli(["score", str(table)], capsys)
    assert code == 2 and "row 4 repeats sample c/s/a (first at row 2)" in one_error(err)
    table.write_text("dataset,subject,sample,true,predicted\nc,s,a,a,a\n")
    code, _, err = cli(["score", str(table), "--classes", "a,a"], capsys)
    assert code == 2 and "repeats a" in one_error(err)
    log = tmp_path / "log.txt"
    log.write_bytes("casme2 sub01\nEP\xe9 1 1\n".encode("latin-1"))
    for path, message in ((log, "not a UTF-8 text log"), (tmp_path, "is a folder"),
                          (tmp_path / "nope.txt", "log file not found")):  # fmt: skip
        code, _, err = cli(["score", str(path), "--megc-log"], capsys)
        assert code == 2 and message in one_error(err)
    log.write_text("casme2 sub01\nEP01 1 1\nEP01 1 2\n")
    code, _, err = cli(["score", str(log), "--megc-log"], capsys)
    assert code == 2 and "line 3 repeats sample casme2/sub01/EP01 (first at line 2)" in err


def test_a_greyscale_flow_map_is_refused_not_tripled(flow: Path) -> None:
    from merkit.data.registry import load_dataset

    sample = load_dataset("megc2019-flow", flow).samples[0]
    grey = cv2.cvtColor(cv2.imread(str(sample.path)), cv2.COLOR_BGR2GRAY)
    assert cv2.imwrite(str(sample.path), grey)
    with pytest.raises(DataLayoutError, match=r"8-bit RGB image .* has 1 channel\(s\)"):
        read_flow_map(sample)


def test_two_files_with_one_frame_number_are_refused_by_predict(tmp_path: Path, capsys) -> None:
    clip = tmp_path / "clip"
    clip.mkdir()
    for number in range(10):
        cv2.imwrite(str(clip / f"reg_img{350 + number}.jpg"), np.zeros((64, 64, 3), np.uint8))
    cv2.imwrite(str(clip / "reg_img0359.jpg"), np.zeros((64, 64, 3), np.uint8))
    checkpoint = tmp_path / "m.pt"
    write_checkpoint(checkpoint, {})
    code, _, err = cli(["predict", str(checkpoint), str(clip), "--aligned"], capsys)
    assert code != 0 and "carry the same number 359" in err and "Traceback" not in err


def write_checkpoint(path: Path, changes: dict, meta_text: str | None = None) -> None:
    """A real (tiny) ststnet checkpoint whose metadata carries `changes`."""
    from merkit.inference.checkpoint import CheckpointMeta, save_checkpoint
    from merkit.models import create_model

    model = create_model("ststnet", 3, 3)
    meta = CheckpointMeta(
        model="ststnet", model_kwargs={}, num_classes=3, in_chans=3,
        class_names=("negative", "positive", "surprise"),
        input_spec={"kind": "maps", "channels": 3, "size": [28, 28], "frames": 1},
        prepare={"output": "maps", "size": 28},
    )  # fmt: skip
    save_checkpoint(path, model, meta)
    payload = torch.load(path, weights_only=True)
    data = {**json.loads(payload["meta"]), **changes}
    payload["meta"] = meta_text if meta_text is not None else json.dumps(data)
    torch.save(payload, path)


@pytest.mark.parametrize(
    ("changes", "text", "message"),
    [
        ({"class_names": ["a", "b"]}, None, "2 class names for 3 outputs"),
        ({"prepare": {"output": "maps", "size": 1000000}}, None, "prepare.size is 1000000"),
        ({}, "{not json", "metadata is missing or not a JSON object"),
        ({"num_classes": "three"}, None, "invalid checkpoint metadata"),
    ],
)
def test_checkpoint_metadata_is_checked_on_load(tmp_path, capsys, changes, text, message) -> None:
    path = tmp_path / "m.pt"
    write_checkpoint(path, changes, text)
    with pytest.raises(Exception, match="m.pt") as info:
        load_checkpoint(path)
    assert message in str(info.value)
    code, _, err = cli(["export", str(path), "--onnx", str(tmp_path / "m.onnx")], capsys)
    assert code == 2 and message in one_error(err)
    assert FORMAT and FORMAT_VERSION  # the file was a checkpoint in every other respect


def test_square_brackets_in_paths_print_literally(tmp_path: Path, capsys) -> None:
    code, _, err = cli(["score", str(tmp_path / "res[old].csv")], capsys)
    assert code == 2 and "res[old].csv: predictions file not found" in err
    code, _, err = cli(["inspect", "casme2", str(tmp_path / "data[v2]")], capsys)
    assert code == 2 and "data[v2]: dataset root does not exist" in err


def test_the_ray_hint_keeps_its_brackets(flow: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    args = ["train", "--data", "megc2019-flow", "--root", str(flow), "--executor", "ray"]
    code, _, err = cli([*args, "--out", str(tmp_path / "r"), "--epochs", "1", "--quiet"], capsys)
    assert code == 2 and "pip install 'merkit[ray]'" in one_error(err)


def test_no_sample_prepared_says_why_with_rows(flow: Path, tmp_path: Path, capsys) -> None:
    for png in (flow / "STSNet_whole_norm_u_v_os").glob("*.png"):
        png.write_bytes(b"not a png")
    args = ["train", "--data", "megc2019-flow", "--root", str(flow), "--quiet"]
    code, _, err = cli([*args, "--out", str(tmp_path / "run"), "--epochs", "1"], capsys)
    line = one_error(err)
    assert code == 2 and "all 24 failed, first: casme2/sub01/EP01_01" in line
    assert "combined_3class_gt.csv row 1" in line and "cannot decode flow map" in line
