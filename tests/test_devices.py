"""Devices, precision and determinism, checked without a GPU: every model follows its input's
device (the `meta` device catches any tensor made on a fixed one), `--device cpu` changes
nothing, and a device this machine lacks is one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import run
from experiments import experiment
from flowdata import write_flow_dataset
from merkit.errors import ConfigError
from merkit.models import create_model, get_descriptor, list_models
from merkit.models.inputs import prepared_shape
from merkit.preprocess.config import PrepareConfig
from merkit.training.devices import (
    Placement,
    as_float,
    check_device_text,
    describe,
    resolve_device,
)
from merkit.training.engine import fit, fit_predict
from merkit.training.fit import fit_final
from merkit.training.recipe import Recipe, default_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

GRADIENT = [m for m in list_models() if get_descriptor(m).training == "gradient"]
COMMANDS = ("train", "audit", "fit", "evaluate", "predict", "serve")


@pytest.mark.parametrize("name", GRADIENT)
def test_every_gradient_model_trains_on_the_meta_device(name: str) -> None:
    """Forward and backward in training mode on `meta`: a tensor made on a fixed device (an
    index, a mask, a constant) would meet the meta tensors and fail here. Every preset's
    input is tried, the authors' too, at no cost (meta tensors hold no data)."""
    descriptor = get_descriptor(name)
    for preset, recipe in ((p, default_recipe(name, p)) for p in descriptor.presets):
        shape = prepared_shape(name, PrepareConfig(**descriptor.prepare_keys(preset)))
        channels = shape[0] * shape[1] if len(shape) == 4 else shape[0]
        with torch.device("meta"):
            model = create_model(name, 3, channels, **recipe.model_kwargs).train()
            out = model(torch.zeros(2, channels, *shape[-2:]))
            loss = out.sum()
            if "aux_loss" in descriptor.hooks and (extra := model.aux_loss()) is not None:
                loss = loss + extra
        loss.backward()
        assert out.device.type == "meta" and out.shape == (2, 3), (name, preset)


@pytest.mark.parametrize("text", ["gpu", "cuda:x", "cpu:0", "tpu", ""])
def test_a_device_name_merkit_does_not_know_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a device; choose auto, cpu, cuda"):
        check_device_text(text)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_a_device_this_machine_lacks_names_what_it_has() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"--device cuda:1: this machine has no such CUDA device"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match=r"\(available: cpu"):
        resolve_device("cuda")
    assert describe(torch.device("cpu"), "bf16", True) == "cpu, bf16"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_model_running_command_takes_device(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0 and "--device" in out
    if command in ("train", "audit", "fit"):
        assert "--precision" in out and "--deterministic" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "megc2019-flow", "--root", ".", "--out", "run"],
        ["audit", "--data", "megc2019-flow", "--root", ".", "--out", "audit"],
        ["fit", "--data", "megc2019-flow", "--root", ".", "--out", "m.pt"],
        ["evaluate", "folds", "--data", "megc2019-flow", "--root", ".", "--out", "run"],
        ["predict", "model.pt", "clip.mp4"],
        ["serve"],
    ],
)
def test_cuda_on_a_cpu_machine_is_one_sentence_and_exit_2(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    root = write_flow_dataset(tmp_path / "megc")
    argv = [root.as_posix() if a == "." else a for a in argv]
    code, _, err = run([*argv, "--device", "cuda"], capsys)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "--device cuda: this machine has no such CUDA device" in lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.pt").exists()


def test_device_and_precision_are_validated_config_keys(tmp_path: Path) -> None:
    root = write_flow_dataset(tmp_path / "megc")
    recipe = Recipe(model="cabm", epochs=1, batch_size=8)
    assert experiment("megc2019-flow", root, recipe).placement == Placement("auto", "fp32")
    with pytest.raises(ConfigError, match="precision 'fp64' must be one of fp32, bf16, fp16"):
        experiment("megc2019-flow", root, recipe, precision="fp64")
    with pytest.raises(ConfigError, match="device 'gpu' is not a device"):
        experiment("megc2019-flow", root, recipe, device="gpu")
    with pytest.raises(ConfigError, match="sharpness-aware minimisation"):
        experiment("megc2019-flow", root, Recipe(model="cabm", sam=0.05), precision="fp16")
    ran = experiment("megc2019-flow", root, recipe, device="cpu", deterministic=True)
    identity = experiment("megc2019-flow", root, recipe).identity()
    assert ran.identity() == identity  # the device is how a run goes, not what it computes
    assert experiment("megc2019-flow", root, recipe, precision="bf16").identity() != identity


def _maps(n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = rng.random((n, 3, 28, 28), dtype=np.float32) * 0.2
    x[np.arange(n), y, 10:18, 10:18] += 0.8  # a class-dependent blob
    return x, y


def test_cpu_placement_gives_the_default_bits() -> None:
    x, y = _maps()
    recipe = Recipe(model="cabm", model_kwargs={"dim": 8, "depth": 1}, epochs=2, batch_size=8)
    folds = [(np.arange(8, 24), np.arange(8)), (np.arange(16), np.arange(16, 24))]
    default = fit_predict(recipe, x, y, folds, 3, seed=1)
    on_cpu = fit_predict(recipe, x, y, folds, 3, seed=1, placement=Placement("cpu"))
    auto = fit_predict(recipe, x, y, folds, 3, seed=1, placement=Placement("auto"))
    for a, b, c in zip(default, on_cpu, auto, strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_learns_on_the_cpu(precision: str) -> None:
    """Autocast (and fp16's loss scaler) run end to end and still learn the blobs."""
    x, y = _maps(30)
    recipe = Recipe(
        model="cabm", model_kwargs={"dim": 8, "depth": 1}, epochs=8, batch_size=10, lr=1e-2
    )
    fold = [(np.arange(24), np.arange(24, 30))]
    (result,) = fit_predict(
        recipe, x, y, fold, 3, output="history", placement=Placement("cpu", precision)
    )
    losses = result.history["train_loss"]
    assert np.isfinite(result.probs).all() and losses[-1] < losses[0]


def test_uint8_frames_become_the_float_values_they_stored() -> None:
    frames = np.arange(256, dtype=np.uint8)
    assert torch.equal(as_float(torch.from_numpy(frames)), torch.from_numpy(frames / 255.0).float())


def test_fit_on_cpu_gives_the_same_weights_as_without(tmp_path: Path) -> None:
    root = write_flow_dataset(tmp_path / "megc")
    recipe = Recipe(model="cabm", model_kwargs={"dim": 8, "depth": 1}, epochs=2, batch_size=8)
    plain = fit_final(experiment("megc2019-flow", root, recipe), progress=False).checkpoint
    cpu = experiment("megc2019-flow", root, recipe, device="cpu")
    again = fit_final(cpu, progress=False).checkpoint
    weights = again.model.state_dict()
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    model = fit(recipe, *_maps(), 3, placement=Placement("cpu"))
    assert next(model.parameters()).device.type == "cpu"


def test_run_metadata_and_report_say_where_it_ran(tmp_path: Path) -> None:
    from merkit.training.runner import run_experiment

    root = write_flow_dataset(tmp_path / "megc")
    recipe = Recipe(model="cabm", model_kwargs={"dim": 8, "depth": 1}, epochs=1, batch_size=8)
    config = experiment("megc2019-flow", root, recipe, device="cpu", precision="bf16")
    run_experiment(config, tmp_path / "run", progress=False)
    meta = (tmp_path / "run" / "config.yaml").read_text()
    assert "device: cpu, bf16" in meta
    assert "cpu, bf16" in (tmp_path / "run" / "report.md").read_text()
    fingerprint = json.loads((tmp_path / "run" / "metrics.json").read_text()).get("fingerprint")
    assert fingerprint is None or "cpu" not in str(fingerprint)
