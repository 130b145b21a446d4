"""Published flow maps (the megc2019-flow loader's PNGs) as preparation outputs, and region
mosaics: a map resized like computed ones, or cut around five facial points of its apex face
(HTNet's input), with the points cached per face image under `cache_dir/points`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from merkit.data.sample import APEX_FACE, Sample
from merkit.errors import ConfigError, DataLayoutError
from merkit.preprocess.config import MOTION_KINDS, PrepareConfig
from merkit.preprocess.flow import minmax_scale
from merkit.preprocess.flowmaps import read_flow_map
from merkit.preprocess.landmarks import image_points
from merkit.preprocess.regions import fallback_points, region_layout, region_mosaic, rescale_points

POINTS_FOLDER = "points"  # under the cache folder: five facial points per face image


def is_flow_map_sample(sample: Sample) -> bool:
    """A sample that is one published u/v/strain PNG (the megc2019-flow loader), not frames."""
    return not sample.frames and sample.path is not None and sample.path.suffix.lower() == ".png"


def mosaic(
    maps: np.ndarray, points: np.ndarray | None, face_size: Any, config: PrepareConfig
) -> np.ndarray:
    """The region mosaic of `maps` around five points found on a face image of `face_size`
    (side, or (width, height)); HTNet's fallback points where none were found."""
    size = maps.shape[-1]
    at = fallback_points(size) if points is None else rescale_points(points, face_size, size)
    return region_mosaic(maps, at, region_layout(config.regions))


def published_map(sample: Sample, config: PrepareConfig) -> np.ndarray:
    """A published map resized to the output size (re-scaled to 0..1 as computed maps are)."""
    if config.output not in MOTION_KINDS or config.raw_flow:
        raise ConfigError(
            f"{sample.path}: a published flow map holds only min-max scaled u/v/strain; "
            "use output='maps' (or 'regions') with raw_flow=False"
        )
    maps = read_flow_map(sample)
    if maps.shape[1:] == (config.size, config.size):
        return maps
    interp = cv2.INTER_AREA if config.size < maps.shape[1] else cv2.INTER_LINEAR
    resized = [cv2.resize(c, (config.size, config.size), interpolation=interp) for c in maps]
    return minmax_scale(np.stack(resized))


def published_regions(
    sample: Sample, config: PrepareConfig, cache_dir: Path | None
) -> tuple[np.ndarray, str]:
    """The region mosaic of a published map around the points of its apex face image."""
    maps = published_map(sample, config)
    face = sample.meta.get(APEX_FACE)
    if face is None:
        raise DataLayoutError(
            f"{sample.path}: no apex face image for {sample.uid}; a 'regions' output needs one "
            f"(e.g. ROOT/apex/{sample.subject}_{sample.clip}.jpg)"
        )
    points_cache = cache_dir / POINTS_FOLDER if cache_dir is not None else None
    points, source, face_size = image_points(Path(face), cache_dir=points_cache)
    return mosaic(maps, points, face_size, config), source
