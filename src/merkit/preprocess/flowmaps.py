"""Reading the published 28x28 u/v/strain flow-map PNGs (STSTNet/HTNet input format)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from merkit.data.sample import Sample
from merkit.errors import DataLayoutError


def read_flow_map(sample: Sample) -> np.ndarray:
    """The sample's map as float32 (3, H, W) in 0..1, channels (u, v, strain).

    PNGs are stored RGB = (u, v, strain); OpenCV reads BGR, so the channels are reversed here.
    """
    if sample.path is None:
        raise DataLayoutError(f"{sample.uid}: sample has no flow-map file")
    image = cv2.imread(str(sample.path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataLayoutError(f"{sample.path}: cannot decode flow map (expected an RGB PNG)")
    rgb = image[:, :, ::-1].astype(np.float32) / 255.0
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def read_flow_maps(samples: Sequence[Sample]) -> np.ndarray:
    """Stack the maps of `samples` into one float32 array (N, 3, H, W)."""
    maps = [read_flow_map(s) for s in samples]
    shapes = {m.shape for m in maps}
    if len(shapes) > 1:
        raise DataLayoutError(f"flow maps differ in size: {sorted(shapes)}")
    return np.stack(maps) if maps else np.zeros((0, 3, 28, 28), np.float32)
