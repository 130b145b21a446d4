"""`merkit fit`, `merkit predict`, `merkit export` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flowdata import write_flow_dataset
from inference_fixtures import untrained_checkpoint
from merkit.cli import main
from merkit.errors import ConfigError
from merkit.inference import load_checkpoint, read_onnx_meta
from merkit.preprocess.config import PrepareConfig
from merkit.training import fit as fit_module
from merkit.training.config import ExperimentConfig
from preprocess_clips import face_clip

pytestmark = pytest.mark.usefixtures("one_thread")


def run(argv: list[str]) -> int:
    """Exit code of `merkit argv` (0 when it returns normally)."""
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def stderr(capsys: pytest.CaptureFixture) -> str:
    """Captured stderr with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().err.split())


@pytest.fixture
def model(tmp_path: Path) -> Path:
    untrained_checkpoint(tmp_path / "model.pt")
    return tmp_path / "model.pt"


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return face_clip(tmp_path / "astronaut", count=6, apex=3, peak=3.0).path  # type: ignore


@pytest.mark.slow
def test_fit_then_predict_then_export(tmp_path: Path, clip: Path, capsys) -> None:
    root = write_flow_dataset(tmp_path / "megc")
    model = tmp_path / "final.pt"
    argv = ["fit", "--data", "megc2019-flow", "--root", str(root), "--model", "ststnet",
            "--out", str(model), "--epochs", "2", "--seed", "1", "--quiet"]  # fmt: skip
    assert run(argv) == 0
    assert "trained ststnet on 24 megc2019-flow samples" in " ".join(
        capsys.readouterr().out.split()
    )
    _, meta = load_checkpoint(model)
    assert meta.recipe["epochs"] == 2 and meta.seed == 1 and meta.n_samples == 24

    out, pictures = tmp_path / "result.json", tmp_path / "pictures"
    argv = ["predict", str(model), str(clip), "--json", str(out), "--picture", str(pictures)]
    assert run(argv) == 0
    result = json.loads(out.read_text())
    assert result["input"] == str(clip) and result["apex"] == 13  # frames 10..15, peak at 13
    assert set(result["probabilities"]) == {"negative", "positive", "surprise"}
    assert (pictures / "astronaut.png").is_file()
    assert result["picture"]["attention"] is None  # STSTNet has no attention: none is drawn

    onnx_path = tmp_path / "final.onnx"
    assert run(["export", str(model), "--onnx", str(onnx_path)]) == 0
    assert read_onnx_meta(onnx_path) == meta
    capsys.readouterr()
    argv = ["predict", str(onnx_path), str(clip), "--onset", "10", "--apex", "13", "--json", "-"]
    assert run(argv) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    assert from_onnx["timing_sources"]["apex"] == "given"
    for name, p in result["probabilities"].items():
        assert from_onnx["probabilities"][name] == pytest.approx(p, abs=1e-4)


def test_fit_passes_the_apex_policy_to_preparation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`--apex-policy spot` trains on spotted apexes, as predict will use; a bad one exits 2."""
    seen: list[PrepareConfig] = []

    def no_training(experiment: ExperimentConfig, **_kwargs: object) -> None:
        seen.append(experiment.prepare)
        raise ConfigError("stopped before training")

    monkeypatch.setattr(fit_module, "fit_final", no_training)
    argv = ["fit", "--data", "casme2", "--root", str(tmp_path), "--model", "cabm",
            "--out", str(tmp_path / "m.pt"), "--quiet"]  # fmt: skip
    assert run([*argv, "--apex-policy", "spot"]) == 2
    assert run(argv) == 2
    assert [c.apex_policy for c in seen] == ["spot", "annotated"]
    assert run([*argv, "--apex-policy", "always"]) == 2
    assert "apex_policy 'always' must be one of ('annotated', 'spot')" in stderr(capsys)
    assert len(seen) == 2


def test_predict_reports_each_failure_and_goes_on(
    tmp_path: Path, model: Path, clip: Path, capsys
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    missing = tmp_path / "missing"
    argv = ["predict", str(model), str(clip), str(missing), str(broken), "--workers", "2"]
    assert run([*argv, "--json", "-"]) == 2
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [r["input"] for r in results] == [str(clip), str(missing), str(broken)]
    assert "predicted" in results[0] and "error" not in results[0]
    assert "missing: input does not exist" in results[1]["error"]
    assert "broken.mp4: no video frames could be decoded" in results[2]["error"]
    errors = " ".join(captured.err.split())
    assert errors.count("error:") == 3 and "broken.mp4" in errors
    assert "2 of 3 inputs failed" in errors
    assert run(argv) == 2  # a person's view: one line per input, the answer first
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith(f"{clip.name}: {results[0]['predicted']} (")
    assert "onset" in lines[0] and " ms)" in lines[0] and lines[1].startswith("missing: failed")


def test_predict_user_errors_exit_2(tmp_path: Path, model: Path, clip: Path, capsys) -> None:
    assert run(["predict", str(tmp_path / "nope.pt"), str(clip)]) == 2
    assert "nope.pt: model checkpoint does not exist" in stderr(capsys)
    assert run(["predict", str(model), str(clip), "--apex", "12"]) == 2
    assert "apex frame was given without its onset" in stderr(capsys)
    assert run(["predict", str(model), str(clip), "--workers", "0"]) == 2
    assert "--workers 0" in stderr(capsys)
    for rate in ("-5", "nan"):
        assert run(["predict", str(model), str(clip), "--fps", rate]) == 2
        assert f"--fps {rate}: expected a frame rate above 0" in stderr(capsys)


def test_export_refuses_a_non_checkpoint(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(1)}, bogus)
    assert run(["export", str(bogus), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "bogus.pt: not a merkit checkpoint" in stderr(capsys)
    assert not (tmp_path / "x.onnx").exists()
