"""Reading the published 28x28 u/v/strain flow-map PNGs (STSTNet/HTNet input format)."""

from __future__ import annotations

import cv2
import numpy as np

from merkit.data.sample import Sample
from merkit.errors import DataLayoutError


def read_flow_map(sample: Sample) -> np.ndarray:
    """The sample's map as float32 (3, H, W) in 0..1, channels (u, v, strain).

    PNGs are stored RGB = (u, v, strain); OpenCV reads BGR, so the channels are reversed here.
    The file is read as it is: a greyscale or 16-bit image is refused rather than expanded into
    three equal channels (which would pass for a map with u = v = strain).
    """
    if sample.path is None:
        raise DataLayoutError(f"{sample.uid}: sample has no flow-map file")
    image = cv2.imread(str(sample.path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataLayoutError(f"{sample.path}: cannot decode flow map (expected an RGB PNG)")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels != 3 or image.dtype != np.uint8:
        raise DataLayoutError(
            f"{sample.path}: a flow map must be an 8-bit RGB image (u, v, strain), this one has "
            f"{channels} channel(s) of {image.dtype}"
        )
    rgb = image[:, :, ::-1].astype(np.float32) / 255.0
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))
