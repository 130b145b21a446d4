"""`merkit import` / `merkit evaluate`: published per-fold weights fed exactly their own input."""

from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from flowdata import SUBJECTS, write_flow_dataset
from merkit.cli import main
from merkit.inference.checkpoint import load_checkpoint
from merkit.inference.importing import import_weights
from merkit.models import create_model
from merkit.models.imported import WEIGHT_FORMATS


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    return exit_info.value.code


def published_state(seed: int) -> OrderedDict[str, torch.Tensor]:
    """A random state dict under STSTNet's released names (conv1..3, bn1..3, fc)."""
    net = create_model("ststnet", 3, 3)
    torch.manual_seed(seed)
    for value in net.state_dict().values():
        if value.is_floating_point():
            value.copy_(torch.randn_like(value).abs() + 0.1)
    inverse = {v: k for k, v in WEIGHT_FORMATS["ststnet"].key_map.items()}
    return OrderedDict((inverse[k], v.clone()) for k, v in net.state_dict().items())


class ReleasedSTSTNet(torch.nn.Module):
    """The authors' layer order, written independently: conv -> ReLU -> BN -> max-pool, per
    stream; concatenated, 2x2 average pool, flattened, one linear layer."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.state = state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.nn.functional
        parts = []
        for i in (1, 2, 3):
            h = f.relu(
                f.conv2d(x, self.state[f"conv{i}.weight"], self.state[f"conv{i}.bias"], padding=2)
            )
            h = f.batch_norm(
                h,
                self.state[f"bn{i}.running_mean"],
                self.state[f"bn{i}.running_var"],
                self.state[f"bn{i}.weight"],
                self.state[f"bn{i}.bias"],
            )
            parts.append(f.max_pool2d(h, 3, 3, padding=1))
        h = f.avg_pool2d(torch.cat(parts, 1), 2).flatten(1)
        return f.linear(h, self.state["fc.weight"], self.state["fc.bias"])


@pytest.fixture
def weights_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    for i, (_, _, subject, _) in enumerate(SUBJECTS):
        torch.save(published_state(i), folder / f"{subject}.pth")
    return folder


def test_imported_checkpoint_feeds_the_weights_bgr_0_to_255(weights_dir: Path, tmp_path) -> None:
    import_weights("ststnet", weights_dir, tmp_path / "folds")
    model, meta = load_checkpoint(tmp_path / "folds" / "sub01.pt")
    assert meta.input_convention["channel_order"] == [2, 1, 0]
    assert meta.input_convention["scale"] == 255.0
    assert meta.origin["left_out_subject"] == "sub01" and len(meta.origin["sha256"]) == 64
    x = torch.rand(4, 3, 28, 28)  # merkit's maps: (u, v, strain) in 0..1
    reference = ReleasedSTSTNet(torch.load(weights_dir / "sub01.pth", weights_only=True))
    with torch.no_grad():
        expected = reference(x.flip(1) * 255)  # what OpenCV's BGR 0..255 read gives the weights
        assert torch.allclose(model(x), expected, atol=1e-4)
        assert not torch.allclose(model(x), reference(x), atol=1e-2)


def test_evaluate_scores_each_subject_with_its_own_fold(weights_dir: Path, tmp_path) -> None:
    root = write_flow_dataset(tmp_path / "data")
    folds, run = tmp_path / "folds", tmp_path / "run"
    assert run_cli(["import", "ststnet", str(weights_dir), "--out", str(folds)]) == 0
    args = ["evaluate", str(folds), "--data", "megc2019-flow", "--root", str(root)]
    assert run_cli([*args, "--out", str(run), "--quiet"]) == 0
    lines = (run / "predictions.csv").read_text().splitlines()
    assert len(lines) == 1 + 6 * 4
    for name in ("metrics.json", "report.md", "report.html", "confusion.png"):
        assert (run / name).is_file()
    # the subject sub02 is scored by sub02.pt: its probabilities are that model's
    model, _ = load_checkpoint(folds / "sub02.pt")
    maps = sorted((root / "STSNet_whole_norm_u_v_os").glob("sub02_*.png"))
    import cv2

    x = np.stack([cv2.imread(str(p))[:, :, ::-1].transpose(2, 0, 1) / 255.0 for p in maps])
    with torch.no_grad():
        expected = model(torch.from_numpy(x.astype(np.float32))).softmax(-1).numpy()
    rows = [line.split(",") for line in lines[1:] if line.split(",")[1] == "sub02"]
    got = np.array([[float(v) for v in row[5:]] for row in rows])
    assert np.allclose(got, expected, atol=1e-5)
    assert "released per-fold weights" in (run / "report.md").read_text()


def test_evaluate_names_a_subject_without_a_checkpoint(weights_dir, tmp_path, capsys) -> None:
    root = write_flow_dataset(tmp_path / "data")
    folds = tmp_path / "folds"
    import_weights("ststnet", weights_dir, folds)
    (folds / "s02.pt").unlink()
    args = ["evaluate", str(folds), "--data", "megc2019-flow", "--root", str(root)]
    assert run_cli([*args, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint for subject s02" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: torch.save({**published_state(0), "extra.weight": torch.zeros(1)}, p),
            "unknown keys extra.weight",
        ),
        (
            lambda p: torch.save(
                {k: v for k, v in published_state(0).items() if k != "fc.bias"}, p
            ),
            "lacks fc.bias",
        ),
        (
            lambda p: torch.save({**published_state(0), "fc.weight": torch.zeros(3, 500)}, p),
            "fc.weight has shape (3, 500)",
        ),
        (
            lambda p: p.write_bytes(Path(p.parent.parent / "good.pth").read_bytes()[:900]),
            "truncated",
        ),
        (lambda p: p.write_bytes(pickle.dumps({"fc.weight": RunsCode()})), "nothing in it was run"),
        (lambda p: torch.save([1, 2, 3], p), "not a state dict of tensors"),
    ],
)
def test_bad_weights_file_is_one_sentence(tmp_path, monkeypatch, capsys, make, message) -> None:
    monkeypatch.chdir(tmp_path)
    torch.save(published_state(0), tmp_path / "good.pth")
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(published_state(1), folder / "s01.pth")
    make(folder / "s02.pth")
    assert run_cli(["import", "ststnet", str(folder), "--out", str(tmp_path / "folds")]) == 2
    err = capsys.readouterr().err
    assert "s02.pth" in err and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 or "s02.pth" in err.splitlines()[0]
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "folds").exists()  # nothing is written unless every file is good


def test_export_keeps_the_input_convention(weights_dir: Path, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    import_weights("ststnet", weights_dir, tmp_path / "folds")
    onnx_path = tmp_path / "s01.onnx"
    assert run_cli(["export", str(tmp_path / "folds" / "s01.pt"), "--onnx", str(onnx_path)]) == 0
    model, _ = load_checkpoint(tmp_path / "folds" / "s01.pt")
    x = np.random.default_rng(0).random((2, 3, 28, 28), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(onnx_path))
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        assert np.allclose(got, model(torch.from_numpy(x)).numpy(), atol=1e-3)


@pytest.mark.shared_data
def test_released_ststnet_weights_reproduce_their_published_figures(
    megc2019_root: Path, tmp_path: Path
) -> None:
    folds, run = tmp_path / "folds", tmp_path / "run"
    assert (
        run_cli(["import", "ststnet", str(megc2019_root / "ststnet_weights"), "--out", str(folds)])
        == 0
    )
    args = ["evaluate", str(folds), "--data", "megc2019-flow", "--root", str(megc2019_root)]
    assert run_cli([*args, "--out", str(run), "--quiet"]) == 0
    overall = json.loads((run / "metrics.json").read_text())["overall"]
    assert (round(overall["uf1"], 4), round(overall["uar"], 4)) == (0.7447, 0.7435)
