"""Facial-region mosaics: patches of a motion map cut around facial points, tiled into one image.

HTNet (Wang et al. 2024) feeds its transformer not the whole 28x28 u/v/strain map but four
14x14 patches cut around facial landmarks of the apex face, tiled 2x2. Its points are five
(x, y) pairs in the map's pixels -- eye, eye, nose tip, mouth corner, mouth corner, image left
before image right -- and it reads them as it slices (main_HTNet.py:100-130, 202-205):
patch k = map[x_k - 7 : x_k + 7, y_k - 7 : y_k + 7], so x indexes ROWS and y columns. The patch
of point k therefore sits at the transposed position: point 1 (the image-right eye) cuts the
lower-left area (a mouth corner), point 3 (the image-left mouth corner) the upper-right one (an
eye). Tiled as top [p0 | p1], bottom [p3 | p4] (the nose is unused), the mosaic holds the left
eye and left mouth corner of the image in its top row and the right ones in its bottom row.
Before slicing, each coordinate is clamped to [7, 21] and truncated to an int, so every patch
lies inside the map; where no face is found, HTNet uses fixed points (`HTNET_FALLBACK`).

A `RegionLayout` names which point each cell is cut around and whether x indexes rows (HTNet's
reading) or columns (the image's). `REGION_LAYOUTS["htnet"]` is HTNet's; `"upright"` cuts the
same four patches at their image positions, eyes on top, left before right, so the mosaic of
a mirrored face is the mirrored mosaic and the flow-aware flip stays valid on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from merkit.errors import ConfigError

# The five points, in HTNet's (MTCNN's) order; "left" and "right" are the image's.
FIVE_POINTS = ("left eye", "right eye", "nose tip", "left mouth corner", "right mouth corner")
# Which point a point becomes when the face is mirrored left-right.
MIRROR = (1, 0, 2, 4, 3)
# HTNet's points for a face in which none was found, on its 28x28 map (main_HTNet.py:76-82).
HTNET_FALLBACK = np.array(
    [
        (9.528073, 11.062551),
        (21.396168, 10.919773),
        (15.380184, 17.380562),
        (10.255435, 22.121233),
        (20.583706, 22.25584),
    ]
)
HTNET_MAP_SIZE = 28


@dataclass(frozen=True)
class RegionLayout:
    """The mosaic's cells, row by row, as indices into the five points; and how a point (x, y)
    is read: `x_is_row` slices rows by x (HTNet), else rows by y (the image's own axes)."""

    cells: tuple[tuple[int, ...], ...]
    x_is_row: bool

    def __post_init__(self) -> None:
        widths = {len(row) for row in self.cells}
        points = {p for row in self.cells for p in row}
        if not self.cells or len(widths) != 1 or 0 in widths:
            raise ConfigError(f"region layout {self.cells}: rows must be non-empty, equal length")
        if not points <= set(range(len(FIVE_POINTS))):
            raise ConfigError(f"region layout {self.cells}: points are 0..{len(FIVE_POINTS) - 1}")

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of cells."""
        return len(self.cells), len(self.cells[0])

    def half(self, size: int) -> int:
        """Half the side of one patch cut from a `size` x `size` map (7 for 2x2 cells of 28)."""
        return size // (2 * max(self.grid))

    def output_shape(self, channels: int, size: int) -> tuple[int, int, int]:
        rows, cols = self.grid
        side = 2 * self.half(size)
        return (channels, rows * side, cols * side)

    @property
    def flips_with_face(self) -> bool:
        """Whether mirroring the mosaic left-right gives the mosaic of the mirrored face: each row
        read backwards holds the mirror partners of its points, and x indexes columns."""
        return not self.x_is_row and all(
            tuple(MIRROR[p] for p in reversed(row)) == row for row in self.cells
        )


REGION_LAYOUTS = {
    "htnet": RegionLayout(cells=((0, 1), (3, 4)), x_is_row=True),
    "upright": RegionLayout(cells=((0, 1), (3, 4)), x_is_row=False),
}


def region_layout(name: str) -> RegionLayout:
    """A registered layout; ConfigError naming the known ones otherwise."""
    try:
        return REGION_LAYOUTS[name]
    except KeyError:
        known = ", ".join(REGION_LAYOUTS)
        raise ConfigError(f"unknown region layout {name!r}; choose one of {known}") from None


Size = float | tuple[float, float]  # a square's side, or (width, height)


def rescale_points(points: np.ndarray, from_size: Size, to_size: Size) -> np.ndarray:
    """Points (x, y) in the pixels of a `from_size` image, in those of a `to_size` one (pixel
    centres stay pixel centres)."""
    ratio = np.asarray(to_size, np.float64) / np.asarray(from_size, np.float64)
    return (np.asarray(points, np.float64) + 0.5) * ratio - 0.5


def fallback_points(size: int) -> np.ndarray:
    """HTNet's fallback points, on a `size` x `size` map."""
    return rescale_points(HTNET_FALLBACK, HTNET_MAP_SIZE, size)


def patch_centres(points: np.ndarray, size: int, half: int) -> np.ndarray:
    """Each coordinate clamped to [half, size - half] and truncated to an int, as HTNet does
    (its [7, 21] on 28x28 maps), so every patch lies inside the map."""
    clamped = np.clip(np.asarray(points, np.float64), half, size - half)
    return np.trunc(clamped).astype(np.int64)


def region_mosaic(maps: np.ndarray, points: np.ndarray, layout: RegionLayout) -> np.ndarray:
    """The mosaic (C, rows * 2h, cols * 2h) of one square map (C, S, S) around its five points
    (x, y) given in the map's pixels; h = `layout.half(S)`."""
    size = maps.shape[-1]
    if maps.ndim != 3 or maps.shape[-2] != size:
        raise ConfigError(f"a region mosaic needs one square (C, S, S) map, got {maps.shape}")
    half = layout.half(size)
    centres = patch_centres(points, size, half)
    rows = []
    for row in layout.cells:
        patches = []
        for index in row:
            x, y = centres[index]
            r, c = (x, y) if layout.x_is_row else (y, x)
            patches.append(maps[:, r - half : r + half, c - half : c + half])
        rows.append(np.concatenate(patches, axis=2))
    return np.ascontiguousarray(np.concatenate(rows, axis=1))
