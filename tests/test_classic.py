"""The classic models: HOOF and LBP-TOP features, the SVM head's parity with scikit-learn, and
a fitted model saved, reloaded and exported like a network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference_fixtures import make_meta
from merkit.errors import ConfigError
from merkit.inference.checkpoint import load_checkpoint, save_checkpoint
from merkit.inference.export import OnnxBackend, export_onnx
from merkit.models import create_model, get_descriptor, list_models
from merkit.models.hoof import HOOF
from merkit.models.inputs import check_input
from merkit.models.lbptop import LBPTOP, lbp_codes, uniform_labels
from merkit.models.mapsvm import CellMeans
from merkit.preprocess.pipeline import PrepareConfig
from merkit.training.closed_form import ClassicClassifier, ClassicEngine, extract_features
from merkit.training.recipe import Recipe, default_recipe
from merkit.training.results import FoldResult
from merkit.training.validation import validate_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

SEQUENCE = PrepareConfig(output="sequence", size=32, frames=8)  # as `grey_clips`


def still_maps(n: int = 1, size: int = 28) -> torch.Tensor:
    """Min-max scaled maps of a face that does not move: u and v at mid-grey, no strain."""
    return torch.cat([torch.full((n, 2, size, size), 0.5), torch.zeros(n, 1, size, size)], 1)


def labelled_maps(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Still maps with noise where class c moves one patch in direction c * 120 degrees."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = still_maps(n).numpy() + rng.normal(0, 0.02, (n, 3, 28, 28)).astype(np.float32)
    for i, label in enumerate(y):
        angle = 2 * np.pi * label / 3
        x[i, 0, 8:16, 8:16] += 0.3 * np.cos(angle) * rng.uniform(0.5, 1.0)
        x[i, 1, 8:16, 8:16] += 0.3 * np.sin(angle) * rng.uniform(0.5, 1.0)
    return np.clip(x, 0, 1), y


def grey_clips(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 8, 32, 32) noise clips where class c brightens, darkens or keeps still over time."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.random((n, 8, 32, 32), dtype=np.float32) * 0.2
    ramp = np.linspace(0, 0.5, 8, dtype=np.float32)[:, None, None]
    for i, label in enumerate(y):
        x[i, :, 8:24, 8:24] += (0, 1, -1)[label] * ramp + 0.5
    return x, y


# ---- the registry ------------------------------------------------------------------------------


def test_classic_models_are_registered_as_closed_form() -> None:
    assert {"hoof-svm", "lbptop-svm", "map-svm"} <= set(list_models())
    assert {"hoof-svm", "map-svm"} <= set(list_models("maps"))
    assert "lbptop-svm" in list_models("sequence")
    for name in ("hoof-svm", "lbptop-svm", "map-svm"):
        assert get_descriptor(name).training == "closed-form"
        assert get_descriptor(name).closed_form
    assert get_descriptor("cabm").training == "gradient"
    assert not get_descriptor("cabm").closed_form


def test_an_unfitted_classic_model_passes_the_input_checks() -> None:
    """The probe forward before training answers (uniform) probabilities of the right shape."""
    assert check_input("hoof-svm", (5, 3, 28, 28), "maps") == (5, 3, 28, 28)
    assert check_input("lbptop-svm", (5, 8, 1, 64, 64), "sequence") == (5, 8, 64, 64)
    with pytest.raises(ConfigError, match="hoof-svm.*takes motion maps"):
        check_input("hoof-svm", (5, 8, 1, 64, 64), "sequence")
    with pytest.raises(ConfigError, match="5x5 cells does not fit 2x2"):
        check_input("lbptop-svm", (5, 3, 1, 4, 4), "sequence")


def test_bad_classic_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="kernel 'poly'"):
        create_model("hoof-svm", kernel="poly")
    with pytest.raises(ConfigError, match="strain statistic 'max'"):
        create_model("hoof-svm", strain=["max"])
    with pytest.raises(ConfigError, match="C must be positive"):
        create_model("lbptop-svm", C=0)
    with pytest.raises(ConfigError, match="3-channel"):
        create_model("hoof-svm", in_chans=2)


# ---- HOOF --------------------------------------------------------------------------------------


def test_hoof_puts_a_uniform_flow_in_one_bin_of_its_cells() -> None:
    """A quarter of the face moves right (u up, v unchanged): all its magnitude lands in bin 0
    (direction 0 degrees) of the top-left cells, and nothing anywhere else."""
    x = still_maps()
    x[0, 0, :14, :14] = 0.8
    features = HOOF(grid=2, bins=8, strain=())(x).view(8, 2, 2)
    assert features[0, 0, 0] == pytest.approx(0.3)
    features[0, 0, 0] = 0
    assert features.abs().max() == 0


def test_hoof_bins_follow_the_flow_direction_and_strain_is_averaged_per_cell() -> None:
    x = still_maps()
    x[0, 1, :7, :7] = 0.2  # v down by 0.3 in one cell: direction 270 degrees, bin 6 of 8
    x[0, 2, :7, :7] = 1.0  # strain in that cell only
    features = HOOF(grid=4, bins=8, strain=("mean", "std"))(x)
    hist, mean, std = features[0, :128].view(8, 4, 4), features[0, 128:144], features[0, 144:]
    assert hist[6, 0, 0] == pytest.approx(0.3) and hist.sum() == pytest.approx(0.3)
    assert mean.tolist() == [1.0] + [0.0] * 15
    assert std.abs().max() == 0  # uniform within the cell


def test_hoof_measures_motion_from_the_median_not_from_zero() -> None:
    """Min-max scaling puts "no motion" anywhere in 0..1: a map that is the same everywhere
    holds no motion, whatever its level."""
    x = still_maps()
    x[:, :2] = 0.9
    assert HOOF()(x).abs().max() == 0


# ---- map-svm ---------------------------------------------------------------------------------


def test_map_features_are_the_centred_maps_averaged_over_a_7x7_grid() -> None:
    """A map the same everywhere holds no motion; a 4x4 block moved up in u shows, signed, in
    its cell only; the 3 x 49 features are u, v and strain in that order."""
    x = still_maps(2)
    x[:, :2] = 0.9
    assert CellMeans()(x).abs().max() == 0
    x = still_maps()
    x[0, 0, 4:8, 8:12] = 0.7  # cell (1, 2) of u, +0.2 over the median
    x[0, 2, 24:, 24:] = -0.4  # cell (6, 6) of strain, the median of strain is 0
    features = CellMeans()(x)
    assert features.shape == (1, 147)
    expected = torch.zeros(3, 7, 7)
    expected[0, 1, 2], expected[2, 6, 6] = 0.2, -0.4
    torch.testing.assert_close(features.view(3, 7, 7), expected)


def test_map_grid_pools_other_map_sizes_and_refuses_a_grid_finer_than_the_map() -> None:
    x = still_maps(size=30)
    x[0, 1, :5, :5] = 1.0  # v of the first of 5x5 cells of 6x6 pixels: mean 0.5 * 25 / 36
    features = CellMeans(grid=5)(x).view(3, 5, 5)
    assert features[1, 0, 0] == pytest.approx(0.5 * 25 / 36)
    assert features.abs().sum() == pytest.approx(0.5 * 25 / 36)
    with pytest.raises(ConfigError, match="map-svm: a grid of 7x7 cells does not fit 6x6"):
        CellMeans()(still_maps(size=6))


# ---- LBP-TOP -----------------------------------------------------------------------------------


def test_lbp_code_of_a_hand_made_patch() -> None:
    """Neighbour p sits at 45p degrees counter-clockwise from the right; bit p is set when it is
    at least the centre (5). Right 9 (bit 0), above 1, left 7 (bit 4), below 5 (bit 6: equal
    counts); the diagonals are bilinear mixes of four pixels: up-right 3.50, up-left 2.09,
    down-left 4.91 (just below), down-right 6.33 (bit 7)."""
    patch = torch.tensor([[0.0, 1.0, 2.0], [7.0, 5.0, 9.0], [4.0, 5.0, 6.0]])
    volume = patch.expand(3, 3, 3)[None]  # three identical frames
    assert lbp_codes(volume, ("xy",)).item() == 1 + 16 + 64 + 128


def test_lbp_codes_match_scikit_image() -> None:
    feature = pytest.importorskip("skimage.feature")
    image = np.random.default_rng(0).integers(0, 256, (19, 23)).astype(np.uint8)
    expected = feature.local_binary_pattern(image, 8, 1, "default")[1:-1, 1:-1]
    volume = torch.from_numpy(np.stack([image] * 3)).float()[None]
    assert np.array_equal(lbp_codes(volume, ("xy",))[0, 0, 0].numpy(), expected)


def test_uniform_labels() -> None:
    labels = uniform_labels(8)
    assert int(labels.max()) == 58  # 58 uniform patterns and one label for the rest
    assert labels[0] == 0 and labels[0b01010101] == 58 and labels[0b00011110] < 58
    assert labels[0b11111111] < 58 and len(set(labels.tolist())) == 59


def test_time_planes_see_a_brightening_clip() -> None:
    """A clip brightening over time: flat in XY (every bit set), and in XT and YT the
    neighbours one frame later (bits 5, 6, 7) or in the same frame (0, 4) are >= the centre."""
    volume = torch.arange(5.0)[:, None, None].expand(5, 6, 6)[None]
    codes = lbp_codes(volume)  # planes xy, xt, yt
    assert codes.shape == (1, 3, 3, 4, 4)
    assert set(codes[0, 0].unique().tolist()) == {255}
    assert set(codes[0, 1].unique().tolist()) == {1 + 16 + 32 + 64 + 128}
    assert set(codes[0, 2].unique().tolist()) == {1 + 16 + 32 + 64 + 128}


def test_lbptop_histograms_are_fractions_per_block_and_plane() -> None:
    x, _ = grey_clips(2)
    features = LBPTOP(blocks=3)(torch.from_numpy(x))
    assert features.shape == (2, 3 * 9 * 59)  # planes x blocks x labels
    sums = features.view(2, 3, 9, 59).sum(-1)  # every (plane, block) histogram sums to 1
    np.testing.assert_allclose(sums.numpy(), 1, rtol=1e-6)


# ---- the SVM head: parity with scikit-learn ----------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"kernel": "linear"}, {"grid": 2, "strain": ["std"]}])
def test_head_probabilities_equal_scikit_learn(kwargs: dict) -> None:
    x, y = labelled_maps(30)
    classifier = ClassicClassifier("hoof-svm", 3, seed=1, **kwargs).fit(x[:24], y[:24])
    features = extract_features(classifier.model_.features, x[24:])
    expected = classifier.calibrated_.predict_proba(features.astype(np.float64))
    np.testing.assert_allclose(classifier.predict_proba(x[24:]), expected, atol=1e-6)
    assert np.isclose(expected.max(1), 1 / 3, atol=0.05).sum() < 6  # not uniform: fitted


def test_two_trained_classes_of_three_give_the_third_probability_zero() -> None:
    x, y = labelled_maps(30)
    keep = y[:24] != 1
    classifier = ClassicClassifier("hoof-svm", 3).fit(x[:24][keep], y[:24][keep])
    features = extract_features(classifier.model_.features, x[24:]).astype(np.float64)
    probs = classifier.predict_proba(x[24:])
    assert np.all(probs[:, 1] == 0)
    np.testing.assert_allclose(
        probs[:, [0, 2]], classifier.calibrated_.predict_proba(features), atol=1e-6
    )


def test_lbptop_head_equals_scikit_learn_and_learns_the_clips() -> None:
    x, y = grey_clips(18)
    classifier = ClassicClassifier("lbptop-svm", 3, blocks=2).fit(x[:12], y[:12])
    features = extract_features(classifier.model_.features, x[12:]).astype(np.float64)
    probs = classifier.predict_proba(x[12:])
    np.testing.assert_allclose(probs, classifier.calibrated_.predict_proba(features), atol=1e-6)
    assert (probs.argmax(1) == y[12:]).all()


# ---- the engine --------------------------------------------------------------------------------


def test_engine_uses_only_the_training_samples_of_each_fold() -> None:
    x, y = labelled_maps(30)
    folds = [(np.arange(10, 30), np.arange(10)), (np.arange(20), np.arange(20, 30))]
    recipe = default_recipe("hoof-svm")
    probs = ClassicEngine().fit_predict(recipe, x, y, folds, 3, seed=0)
    assert [p.shape for p in probs] == [(10, 3), (10, 3)]
    shuffled = y.copy()
    shuffled[:10] = shuffled[:10][::-1]  # the first fold's test labels: never read by it
    again = ClassicEngine().fit_predict(recipe, x, shuffled, folds[:1], 3, seed=0)
    np.testing.assert_array_equal(again[0], probs[0])
    accuracy = np.mean(np.concatenate(probs).argmax(1) == y[np.r_[0:10, 20:30]])
    assert accuracy >= 0.9


def test_engine_outputs_and_seed() -> None:
    x, y = labelled_maps(24)
    folds = [(np.arange(12, 24), np.arange(12))]
    recipe, engine = default_recipe("hoof-svm"), ClassicEngine()
    probs = engine.fit_predict(recipe, x, y, folds, 3, seed=0)[0]
    (history,) = engine.fit_predict(recipe, x, y, folds, 3, seed=0, output="history")
    (epochs,) = engine.fit_predict(recipe, x, y, folds, 3, seed=0, output="epochs")
    assert isinstance(history, FoldResult) and history.history == {}
    np.testing.assert_array_equal(history.probs, probs)
    np.testing.assert_array_equal(epochs, probs[None])  # no epochs: a single one
    # The seed shuffles the calibration folds, so it moves the probabilities, not the decisions.
    other = engine.fit_predict(recipe, x, y, folds, 3, seed=1)[0]
    assert not np.array_equal(other, probs)
    np.testing.assert_array_equal(other.argmax(1), probs.argmax(1))


@pytest.mark.parametrize("model", ["hoof-svm", "lbptop-svm"])
def test_classic_models_repeat_to_the_bit(model: str) -> None:
    """Same seed: bit-identical probabilities; another seed: other ones (the calibration)."""
    x, y = labelled_maps(24) if model == "hoof-svm" else grey_clips(24)
    folds = [(np.arange(12, 24), np.arange(12)), (np.arange(12), np.arange(12, 24))]
    recipe = default_recipe(model)
    recipe.model_kwargs = {} if model == "hoof-svm" else {"blocks": 2}
    first, again, other = (
        ClassicEngine().fit_predict(recipe, x, y, folds, 3, seed) for seed in (5, 5, 6)
    )
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_validation_and_engine_refuse_gradient_settings_and_single_class_folds() -> None:
    x, y = labelled_maps(12)
    folds = [(np.arange(6, 12), np.arange(6))]
    with pytest.raises(ConfigError, match="augment.hflip, ema apply to gradient training only"):
        recipe = Recipe.from_dict({**default_recipe("hoof-svm").to_dict(), "ema": 0.9})
        recipe.augment.hflip = True
        validate_recipe(recipe, PrepareConfig())
    with pytest.raises(ConfigError, match="trained by gradient"):
        ClassicEngine().fit_predict(default_recipe("cabm"), x, y, folds, 3)
    with pytest.raises(ConfigError, match="two classes or more"):
        ClassicEngine().fit_predict(default_recipe("hoof-svm"), x, np.zeros(12, int), folds, 3)
    rare = y % 2
    rare[6] = 2
    with pytest.raises(ConfigError, match="class 2 has a single training sample"):
        ClassicEngine().fit_predict(default_recipe("hoof-svm"), x, rare, folds, 3)


# ---- saved, reloaded, exported -----------------------------------------------------------------


def fitted_checkpoint(path: Path, model: str) -> tuple[torch.nn.Module, np.ndarray]:
    """A classic model fitted on small data and saved; returns it and held-out inputs."""
    if model in ("hoof-svm", "map-svm"):
        x, y = labelled_maps(30)
        meta = make_meta(model, {}, PrepareConfig(flow="farneback"), in_chans=3)
    else:
        x, y = grey_clips(18)
        meta = make_meta(model, {"blocks": 2}, SEQUENCE, in_chans=8)
    recipe = default_recipe(model)
    recipe.model_kwargs = dict(meta.model_kwargs)
    net = ClassicEngine().fit(recipe, x[:12], y[:12], 3)
    save_checkpoint(path, net, meta)
    return net, x[12:]


@pytest.mark.parametrize("model", ["hoof-svm", "map-svm", "lbptop-svm"])
def test_fitted_model_round_trips_through_a_weights_only_checkpoint(
    model: str, tmp_path: Path
) -> None:
    net, x = fitted_checkpoint(tmp_path / "m.pt", model)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)  # tensors only, no pickled code
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta.model == model
    with torch.no_grad():
        assert torch.equal(loaded(torch.from_numpy(x)), net(torch.from_numpy(x)))
    assert loaded.head.fitted and loaded.head.support.shape[0] > 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hoof-svm", "map-svm", "lbptop-svm"])
def test_fitted_model_exports_to_onnx_with_parity(model: str, tmp_path: Path) -> None:
    net, x = fitted_checkpoint(tmp_path / "m.pt", model)
    _, meta = load_checkpoint(tmp_path / "m.pt")
    path = export_onnx(net, meta, tmp_path / "m.onnx")
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).softmax(-1).numpy()
    backend = OnnxBackend(path)
    np.testing.assert_allclose(backend.probabilities(x), expected, atol=1e-5)
    np.testing.assert_allclose(backend.probabilities(x[:1]), expected[:1], atol=1e-5)


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "figures"), [("hoof-svm", (0.7404, 0.7346)), ("map-svm", (0.76, 0.7655))]
)
def test_flow_svm_loso_on_the_development_maps_gives_the_readme_figure(
    megc2019_root: Path, model: str, figures: tuple[float, float]
) -> None:
    from merkit.data.registry import load_dataset
    from merkit.evaluation.metrics import uar, uf1
    from merkit.evaluation.splitters import LeaveOneSubjectOut
    from merkit.preprocess.pipeline import prepare

    data = load_dataset("megc2019-flow", megc2019_root)
    prepared = prepare(data.samples, PrepareConfig(output="maps", size=28), progress=False)
    y = np.asarray([s.label for s in prepared.samples])
    folds = list(LeaveOneSubjectOut().split(prepared.samples))
    probs = ClassicEngine().fit_predict(default_recipe(model), prepared.x, y, folds, 3)
    predicted = np.empty_like(y)
    for (_, test), p in zip(folds, probs, strict=True):
        predicted[test] = p.argmax(1)
    assert (round(uf1(y, predicted, 3), 4), round(uar(y, predicted, 3), 4)) == figures
