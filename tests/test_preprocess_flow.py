"""Optical flow, strain, the published map format, and Eulerian magnification."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from merkit.data.sample import Sample
from merkit.errors import ConfigError
from merkit.preprocess.flow import (
    FLOW_METHODS,
    compute_flow,
    flow_map_name,
    minmax_scale,
    motion_maps,
    optical_strain,
    write_flow_map,
)
from merkit.preprocess.flowmaps import read_flow_map
from merkit.preprocess.magnify import magnify

SIZE = 160
INTERIOR = slice(32, -32)


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return cv2.resize(data.camera(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def _warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """`image` moved by the affine map: the flow from image to result is x -> matrix @ x."""
    return cv2.warpAffine(
        image,
        matrix.astype(np.float32),
        image.shape[::-1],
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )


@pytest.mark.parametrize("method", FLOW_METHODS)
def test_flow_recovers_a_subpixel_translation(camera: np.ndarray, method: str) -> None:
    moved = _warp(camera, np.array([[1, 0, 0.5], [0, 1, 0.3]]))
    flow = compute_flow(camera, moved, method)[INTERIOR, INTERIOR]
    assert np.median(flow[..., 0]) == pytest.approx(0.5, abs=0.1)
    assert np.median(flow[..., 1]) == pytest.approx(0.3, abs=0.1)


@pytest.mark.parametrize("method", ["tvl1", "dis"])
def test_mirrored_pair_negates_and_mirrors_u(camera: np.ndarray, method: str) -> None:
    moved = _warp(camera, np.array([[1, 0, 0.7], [0, 1, -0.4]]))
    flow = compute_flow(camera, moved, method)
    mirrored = compute_flow(camera[:, ::-1].copy(), moved[:, ::-1].copy(), method)
    u_error = np.abs(mirrored[..., 0][:, ::-1] + flow[..., 0])[INTERIOR, INTERIOR]
    v_error = np.abs(mirrored[..., 1][:, ::-1] - flow[..., 1])[INTERIOR, INTERIOR]
    assert np.median(u_error) < 0.05 and np.median(v_error) < 0.05
    assert np.median(mirrored[..., 0]) == pytest.approx(-0.7, abs=0.1)


def _affine_field(a: float, b: float, c: float, d: float, size: int = 64) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.stack([a * xs + b * ys, c * xs + d * ys], axis=-1)


def test_strain_of_an_affine_field_is_its_analytic_value() -> None:
    a, b, c, d = 0.02, 0.01, -0.005, -0.01
    strain = optical_strain(_affine_field(a, b, c, d))
    expected = np.sqrt(a**2 + d**2 + 2 * (0.5 * (b + c)) ** 2)
    np.testing.assert_allclose(strain, expected, rtol=1e-5)
    rotation = optical_strain(_affine_field(0.0, -0.03, 0.03, 0.0))  # rigid: no strain
    assert np.abs(rotation).max() < 1e-6


def test_strain_of_a_deformed_image_matches_the_analytic_value(camera: np.ndarray) -> None:
    a, b, c, d = 0.02, 0.01, -0.005, -0.01
    centre = np.array([SIZE / 2, SIZE / 2])
    linear = np.array([[1 + a, b], [c, 1 + d]])
    deformed = _warp(camera, np.hstack([linear, (centre - linear @ centre)[:, None]]))
    strain = optical_strain(compute_flow(camera, deformed, "tvl1"))
    expected = np.sqrt(a**2 + d**2 + 0.5 * (b + c) ** 2)
    assert np.median(strain[48:-48, 48:-48]) == pytest.approx(expected, rel=0.1)


def test_motion_maps_rescale_displacements_to_the_output_grid() -> None:
    flow = np.zeros((128, 128, 2), np.float32)
    flow[..., 0], flow[..., 1] = 4.0, -2.0
    maps = motion_maps(flow, 32)
    assert maps.shape == (3, 32, 32) and maps.dtype == np.float32
    np.testing.assert_allclose(maps[0], 1.0)
    np.testing.assert_allclose(maps[1], -0.5)
    np.testing.assert_allclose(maps[2], 0.0, atol=1e-6)


def test_minmax_scale_works_per_channel() -> None:
    maps = np.stack(
        [np.arange(16.0).reshape(4, 4), -np.arange(16.0).reshape(4, 4), np.ones((4, 4))]
    )
    scaled = minmax_scale(maps)
    assert scaled[0].min() == 0 and scaled[0].max() == 1 and scaled[0, 3, 3] == 1
    assert scaled[1, 0, 0] == 1 and scaled[1, 3, 3] == 0
    assert not scaled[2].any()


def test_written_map_round_trips_through_the_published_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 28, 28)).astype(np.float32)
    name = flow_map_name("006", "006_1_2")
    assert name == "006_006_1_2 .png"
    write_flow_map(tmp_path / name, maps)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp file left
    sample = Sample("samm", "006", "006_1_2", tmp_path / name, "anger", 0)
    read = read_flow_map(sample)
    np.testing.assert_allclose(read, minmax_scale(maps), atol=0.5 / 255 + 1e-6)


@pytest.mark.shared_data
def test_published_maps_are_rewritten_byte_for_pixel(megc2019_root: Path, tmp_path: Path) -> None:
    source = sorted((megc2019_root / "STSNet_whole_norm_u_v_os").glob("*.png"))[:20]
    for path in source:
        maps = read_flow_map(Sample("x", "s", "c", path, "x", 0))
        write_flow_map(tmp_path / path.name, maps)
        original = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(cv2.imread(str(tmp_path / path.name), cv2.IMREAD_UNCHANGED), original)


def test_magnification_amplifies_only_the_band() -> None:
    count = 50
    t = np.arange(count)[:, None, None]
    base = np.full((count, 32, 32), 100.0)
    in_band = 3 * np.sin(2 * np.pi * 0.2 * t)  # 10 cycles per 50 frames
    slow = 3 * np.sin(2 * np.pi * 0.02 * t)  # 1 cycle: below the band
    alpha = 4.0
    out = magnify((base + in_band + slow).astype(np.float32), alpha, band=(0.05, 0.4))
    expected = base + (1 + alpha) * in_band + slow
    np.testing.assert_allclose(out, expected, atol=1e-3)
    assert magnify(base.astype(np.float32), 0.0).dtype == np.float32
    with pytest.raises(ConfigError):
        magnify(base.astype(np.float32), 1.0, band=(0.3, 0.2))
