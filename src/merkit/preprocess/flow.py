"""Onset->apex optical flow, optical strain, and the published u/v/strain map format.

Optical strain is the magnitude of the infinitesimal strain tensor of the flow (u, v):

    e_xx = du/dx,  e_yy = dv/dy,  e_xy = e_yx = 0.5 * (du/dy + dv/dx)
    strain = sqrt(e_xx^2 + e_yy^2 + e_xy^2 + e_yx^2) = sqrt(e_xx^2 + e_yy^2 + 2 * e_xy^2)

with derivatives by central differences (np.gradient). This is the definition of the optical
strain used by Off-ApexNet and STSTNet; it is zero for a pure translation or rotation.

The published map format (STSTNet/HTNet input) is one RGB PNG per sample, R/G/B = u/v/strain,
each channel min-max scaled to 0..255 on its own, named `{subject}_{filename} .png`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from merkit.errors import ConfigError, DataLayoutError
from merkit.io import write_bytes_atomic
from merkit.preprocess.config import FLOW_METHODS


def _as_uint8(image: np.ndarray) -> np.ndarray:
    """Flow methods take 8-bit grayscale; float images are taken as 0..1 (or 0..255 if larger)."""
    if image.dtype == np.uint8:
        return image
    scale = 255.0 if float(np.max(image, initial=0.0)) <= 1.0 else 1.0
    return np.clip(np.rint(image * scale), 0, 255).astype(np.uint8)


def compute_flow(first: np.ndarray, second: np.ndarray, method: str = "tvl1") -> np.ndarray:
    """Dense flow (H, W, 2) float32 in pixels from `first` to `second` (grayscale, same size).

    `second(x + flow(x)) ~ first(x)`. TV-L1 is the field's standard; Farneback and DIS are
    10-50x faster and less accurate at sub-pixel amplitudes.
    """
    if first.shape != second.shape or first.ndim != 2:
        raise DataLayoutError(
            f"flow needs two grayscale frames of one size, got {first.shape} and {second.shape}"
        )
    a, b = _as_uint8(first), _as_uint8(second)
    if method == "tvl1":
        flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(a, b, None)
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    elif method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow = dis.calc(a, b, None)
    else:
        raise ConfigError(f"unknown flow method {method!r}; expected one of {FLOW_METHODS}")
    return flow.astype(np.float32, copy=False)


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Optical strain magnitude (H, W) float32 of a flow field (H, W, 2); see module docstring."""
    du_dy, du_dx = np.gradient(flow[..., 0])
    dv_dy, dv_dx = np.gradient(flow[..., 1])
    shear = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx**2 + dv_dy**2 + 2.0 * shear**2).astype(np.float32)


def motion_maps(flow: np.ndarray, size: int) -> np.ndarray:
    """(3, size, size) float32 u, v, strain; u and v rescaled to pixels of the output grid.

    Strain is computed at the flow's own resolution (it is a ratio, so it needs no rescaling)
    and then resized; area interpolation averages rather than aliases when shrinking.
    """
    height, width = flow.shape[:2]
    strain = optical_strain(flow)
    channels = (flow[..., 0] * (size / width), flow[..., 1] * (size / height), strain)
    interp = cv2.INTER_AREA if size < min(height, width) else cv2.INTER_LINEAR
    return np.stack([cv2.resize(c, (size, size), interpolation=interp) for c in channels])


def minmax_scale(maps: np.ndarray) -> np.ndarray:
    """Each channel of (C, H, W) scaled to 0..1 on its own (a constant channel becomes 0)."""
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return ((maps - low) / np.where(span > 0, span, 1.0)).astype(np.float32)


def to_map_image(maps: np.ndarray) -> np.ndarray:
    """(3, H, W) maps -> (H, W, 3) uint8 RGB in the published format (per-channel 0..255)."""
    return np.rint(minmax_scale(maps) * 255.0).astype(np.uint8).transpose(1, 2, 0)


def flow_map_name(subject: str, clip: str) -> str:
    """The published file name, space before the suffix included: `006_006_1_2 .png`."""
    return f"{subject}_{clip} .png"


def write_flow_map(path: Path, maps: np.ndarray) -> None:
    """Write (3, H, W) maps as a published-format PNG, atomically (temp file + rename)."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(to_map_image(maps)[:, :, ::-1]))
    if not ok:
        raise DataLayoutError(f"{path}: could not encode the flow map as PNG")
    write_bytes_atomic(Path(path), encoded.tobytes())
