"""Facial-region mosaics: HTNet's layout (x indexes rows), clamping, fallback points, layouts."""

from __future__ import annotations

import numpy as np
import pytest

from merkit.errors import ConfigError
from merkit.preprocess.regions import (
    HTNET_FALLBACK,
    MIRROR,
    REGION_LAYOUTS,
    RegionLayout,
    fallback_points,
    patch_centres,
    region_layout,
    region_mosaic,
    rescale_points,
)


def coded_map(size: int = 28) -> np.ndarray:
    """(3, S, S) whose value at (channel c, row r, column k) is 10000 c + 100 r + k."""
    c, r, k = np.meshgrid(np.arange(3), np.arange(size), np.arange(size), indexing="ij")
    return (10000 * c + 100 * r + k).astype(np.float64)


def rows_cols(patch: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """(first, last) row and column of the map a coded patch was cut from."""
    first, last = patch[0, 0, 0], patch[0, -1, -1]
    return (int(first // 100), int(last // 100)), (int(first % 100), int(last % 100))


def test_htnet_fallback_points_clamp_and_truncate_as_published() -> None:
    centres = patch_centres(fallback_points(28), 28, 7)
    # main_HTNet.py:84-92 turns the fallback into (9,11),(21,10),(15,17),(10,21),(20,21)
    assert centres.tolist() == [[9, 11], [21, 10], [15, 17], [10, 21], [20, 21]]
    np.testing.assert_allclose(fallback_points(28), HTNET_FALLBACK)


def test_clamp_to_the_inner_square_then_truncate_not_round() -> None:
    points = np.array([[-3.0, 30.7], [20.9, 7.99], [6.5, 21.0], [14.0, 13.2], [7.0, 0.0]])
    assert patch_centres(points, 28, 7).tolist() == [[7, 21], [20, 7], [7, 21], [14, 13], [7, 7]]


def test_htnet_mosaic_reads_x_as_row_and_tiles_p0_p1_over_p3_p4() -> None:
    points = np.array([[9.5, 11.1], [21.4, 10.9], [15.4, 17.4], [10.3, 22.1], [20.6, 22.3]])
    mosaic = region_mosaic(coded_map(), points, REGION_LAYOUTS["htnet"])
    assert mosaic.shape == (3, 28, 28)
    # patch k = map[x-7 : x+7, y-7 : y+7] with (x, y) = (9, 11), (21, 10), (10, 21), (20, 21)
    assert rows_cols(mosaic[:, :14, :14]) == ((2, 15), (4, 17))  # p0: rows 9 +- 7, cols 11 +- 7
    assert rows_cols(mosaic[:, :14, 14:]) == ((14, 27), (3, 16))  # p1: the transposed mouth
    assert rows_cols(mosaic[:, 14:, :14]) == ((3, 16), (14, 27))  # p3: the transposed eye
    assert rows_cols(mosaic[:, 14:, 14:]) == ((13, 26), (14, 27))  # p4
    # every channel comes along, in order
    assert (mosaic[1] - mosaic[0] == 10000).all() and (mosaic[2] - mosaic[1] == 10000).all()


def test_upright_mosaic_reads_x_as_column() -> None:
    points = np.array([[9.5, 11.1], [21.4, 10.9], [15.4, 17.4], [10.3, 22.1], [20.6, 22.3]])
    mosaic = region_mosaic(coded_map(), points, REGION_LAYOUTS["upright"])
    assert rows_cols(mosaic[:, :14, :14]) == ((4, 17), (2, 15))  # left eye at row 11, col 9
    assert rows_cols(mosaic[:, :14, 14:]) == ((3, 16), (14, 27))  # right eye at row 10, col 21


def test_upright_mosaic_of_a_mirrored_face_is_the_mirrored_mosaic() -> None:
    """The property that keeps the flow-aware flip valid on the "upright" layout."""
    rng = np.random.default_rng(0)
    maps = rng.random((3, 28, 28))
    points = np.array([[9.0, 10.0], [18.0, 10.0], [13.5, 15.0], [10.0, 20.0], [17.0, 20.0]])
    mirrored_points = points[list(MIRROR)] * [-1, 1] + [27, 0]  # x -> 27 - x, partners swap
    layout = REGION_LAYOUTS["upright"]
    assert layout.flips_with_face and not REGION_LAYOUTS["htnet"].flips_with_face
    mirrored = region_mosaic(maps[:, :, ::-1], mirrored_points + [1, 0], layout)
    np.testing.assert_array_equal(mirrored, region_mosaic(maps, points, layout)[:, :, ::-1])


def test_other_sizes_and_grids() -> None:
    layout = RegionLayout(cells=((0, 1, 2), (3, 2, 4)), x_is_row=False)
    assert layout.grid == (2, 3) and layout.half(28) == 4
    assert layout.output_shape(3, 28) == (3, 16, 24)
    mosaic = region_mosaic(coded_map(), fallback_points(28), layout)
    assert mosaic.shape == (3, 16, 24)
    assert REGION_LAYOUTS["htnet"].output_shape(3, 56) == (3, 56, 56)


def test_bad_layouts_and_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="equal length"):
        RegionLayout(cells=((0, 1), (3,)), x_is_row=True)
    with pytest.raises(ConfigError, match="points are 0..4"):
        RegionLayout(cells=((0, 7),), x_is_row=True)
    with pytest.raises(ConfigError, match="unknown region layout 'eyes'.*htnet"):
        region_layout("eyes")
    with pytest.raises(ConfigError, match="one square"):
        region_mosaic(np.zeros((3, 28, 20)), fallback_points(28), REGION_LAYOUTS["htnet"])


def test_rescale_keeps_pixel_centres() -> None:
    points = np.array([[0.0, 223.0], [111.5, 111.5]])
    np.testing.assert_allclose(rescale_points(points, 224, 28), [[-0.4375, 27.4375], [13.5, 13.5]])
    np.testing.assert_allclose(rescale_points(points, (224, 112), 28)[:, 1], [55.375, 27.5])
