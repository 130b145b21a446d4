"""One clip -> its model input: align the face once, choose the apex (annotated, or spotted by
`config.spotting`), compute the requested output (flow maps, region mosaic, apex face or frame
sequence). `merkit prepare` runs this per clip (`merkit.preprocess.pipeline`); `merkit predict`
calls the same `align_clip` and `clip_output`, so a video is prepared with the same code and the
same input checks as the training data."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from merkit.data.sample import APEX_ANNOTATED, APEX_SPOTTED, Sample
from merkit.errors import AnnotationError, DataLayoutError
from merkit.preprocess.config import MOTION_KINDS, PrepareConfig
from merkit.preprocess.face import Alignment, estimate_alignment, is_cropped_release
from merkit.preprocess.flow import compute_flow, minmax_scale, motion_maps
from merkit.preprocess.frames import ClipFrames
from merkit.preprocess.landmarks import find_points
from merkit.preprocess.magnify import magnify
from merkit.preprocess.published import is_flow_map_sample, mosaic, published_map, published_regions
from merkit.preprocess.spotting import spot

MIN_FRAMES = 2  # a clip of one frame shows no motion: refused by prepare and by predict
# A face crop may enlarge its source up to this factor (synthetic 48 px faces in a 128 crop are
# fine); beyond it the crop is interpolation, which optical flow reads as motion.
MAX_UPSCALE = 4.0


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def _span(sample: Sample, clip: ClipFrames) -> list[int]:
    """Frame numbers from onset to offset (the whole clip where they are not annotated)."""
    onset = clip.numbers[0] if sample.onset is None else sample.onset
    offset = clip.numbers[-1] if sample.offset is None else sample.offset
    if offset < onset:
        raise AnnotationError(f"{sample.uid}: offset frame {offset} precedes onset frame {onset}")
    span = [n for n in clip.numbers if onset <= n <= offset]
    if not span or span[0] != onset:
        raise DataLayoutError(
            f"{sample.path or sample.uid}: onset frame {onset} of {sample.uid} is not a frame"
        )
    return span


def _faces(clip: ClipFrames, numbers: Sequence[int], alignment: Alignment) -> np.ndarray:
    """Aligned grayscale crops, decoded one frame at a time (SAMM frames are 2 Mpixel)."""
    return np.stack([alignment.apply(_gray(clip.read([n])[0])) for n in numbers])


def spotting_faces(frames: Iterable[np.ndarray], alignment: Alignment) -> np.ndarray:
    """Aligned grayscale crops for spotting, shrunk by area averaging (`apply_averaged`)."""
    return np.stack([alignment.apply_averaged(_gray(f)) for f in frames])


def require_contiguous(sample: Sample, numbers: Sequence[int], use: str) -> None:
    """Steps that treat frames as a time series (spotting, sequences, magnification) need
    every frame between the first and last of `numbers`; a gap would silently compress time."""
    if not numbers:
        return
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise DataLayoutError(
            f"{sample.path or sample.uid}: frame(s) {shown} missing between {numbers[0]} and "
            f"{numbers[-1]} of {sample.uid}; {use} needs every frame"
        )


def _check_face_size(sample: Sample, alignment: Alignment, frame: int, crop: int) -> None:
    """Refuse a face so small (a thumbnail, a 1x1 image) that the crop would be interpolation."""
    scale = float(np.sqrt(abs(np.linalg.det(alignment.matrix[:, :2]))))
    if scale > MAX_UPSCALE:
        raise DataLayoutError(
            f"{sample.path or sample.uid}: the face in frame {frame} of {sample.uid} is about "
            f"{crop / scale:.0f} px across, too small for the {crop} px face crop (more than "
            f"{MAX_UPSCALE:g}x enlargement); use larger frames or a smaller crop_size"
        )


def _as_chw(images: np.ndarray) -> np.ndarray:
    """(..., H, W[, 3]) uint8 -> (..., C, H, W) float32 in 0..1."""
    scaled = images.astype(np.float32) / 255.0
    return scaled[..., None, :, :] if scaled.shape[-1] != 3 else np.moveaxis(scaled, -1, -3)


def _flow_output(
    clip: ClipFrames, span: list[int], apex: int, alignment: Alignment, config: PrepareConfig
) -> np.ndarray:
    numbers = [n for n in span if n <= apex] if config.magnify > 0 else [span[0], apex]
    faces = _faces(clip, numbers, alignment)
    if config.magnify > 0:
        faces = magnify(faces, config.magnify, config.magnify_band)
    maps = motion_maps(compute_flow(faces[0], faces[-1], config.flow), config.size)
    return maps if config.raw_flow else minmax_scale(maps)


def _image_output(clip: ClipFrames, numbers: Sequence[int], alignment: Alignment) -> np.ndarray:
    unique = sorted(set(numbers))
    decoded = dict(zip(unique, clip.read(unique), strict=True))
    return _as_chw(np.stack([alignment.apply(decoded[n]) for n in numbers]))


def align_clip(
    sample: Sample,
    clip: ClipFrames,
    frame: int,
    config: PrepareConfig,
    source: str | None = None,
) -> Alignment:
    """The clip's face alignment, estimated once on `frame` (its onset), refusing tiny faces.

    Checked here, before spotting reads every frame, so a thumbnail fails at once. `source`
    names the clip in a no-face error (default: the sample's uid and the frame).
    """
    alignment = estimate_alignment(
        _gray(clip.read([frame])[0]),
        config.crop_size,
        config.margin,
        aligned=config.aligned or is_cropped_release(sample),
        source=source or f"{sample.uid} (frame {frame})",
    )
    _check_face_size(sample, alignment, frame, config.crop_size)
    return alignment


def clip_output(
    sample: Sample,
    clip: ClipFrames,
    span: list[int],
    apex: int,
    alignment: Alignment,
    config: PrepareConfig,
) -> tuple[np.ndarray, str | None]:
    """One clip's model input once its apex is chosen (what `prepare` caches, `predict`
    classifies) and, for "regions", how the facial points were found (None otherwise).

    `span` holds the clip's frame numbers from onset to offset; the outputs that read frames as
    a time series (magnified flow, sequences) refuse a gap in it, naming the missing frames.
    """
    if config.output in MOTION_KINDS:
        if config.magnify > 0:
            require_contiguous(sample, [n for n in span if n <= apex], "magnification")
        maps = _flow_output(clip, span, apex, alignment, config)
        if config.output == "maps":
            return maps, None
        points, source = find_points(alignment.apply(_gray(clip.read([apex])[0])))
        return mosaic(maps, points, config.crop_size, config), source
    output = alignment.resized(config.size)
    if config.output == "apex":
        return _image_output(clip, [apex], output)[0], None
    require_contiguous(sample, span, "a frame sequence")
    picks = np.linspace(0, len(span) - 1, config.frames).round().astype(int)
    return _image_output(clip, [span[i] for i in picks], output), None


def aligned_faces(
    sample: Sample, config: PrepareConfig, whole_clip: bool = False
) -> tuple[list[int], np.ndarray, np.ndarray, str]:
    """The frame numbers and aligned grayscale faces that spotting reads: onset..offset (as
    `prepare` spots), or every frame of the clip's folder (a recording, as `predict` sees it);
    which crop pixels show the frame (`Alignment.coverage`); how the crop was placed
    (`Alignment.face`)."""
    clip = ClipFrames(sample)
    span = list(clip.numbers) if whole_clip else _span(sample, clip)
    alignment = align_clip(sample, clip, span[0], config)
    require_contiguous(sample, span, "apex spotting")
    frames = (clip.read([n])[0] for n in span)
    faces = spotting_faces(frames, alignment)
    return span, faces, alignment.coverage(clip.read([span[0]])[0].shape), alignment.face


def prepare_sample(
    sample: Sample, config: PrepareConfig, cache_dir: Path | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """One clip's array and its metadata ({"apex": number, "apex_source": ...}, and for
    "regions" {"landmarks": source}); `cache_dir` keeps the facial points of published maps."""
    if is_flow_map_sample(sample):
        if config.output != "regions":
            return published_map(sample, config), {}
        x, source = published_regions(sample, config, cache_dir)
        return x, {"landmarks": source}
    clip = ClipFrames(sample, color=config.color and config.output not in MOTION_KINDS)
    span = _span(sample, clip)
    if len(span) < MIN_FRAMES:
        raise DataLayoutError(
            f"{sample.path or sample.uid}: {sample.uid} has {len(span)} frame from onset to "
            f"offset ({span[0]}); at least {MIN_FRAMES} are needed to see motion"
        )
    alignment = align_clip(sample, clip, span[0], config)
    meta: dict[str, Any] = {"apex": sample.apex, "apex_source": sample.apex_source}
    known = sample.apex is not None and sample.apex_source == APEX_ANNOTATED and sample.apex in span
    if config.apex_policy == "spot" or not known:
        require_contiguous(sample, span, "apex spotting")
        faces = spotting_faces((clip.read([n])[0] for n in span), alignment)
        seen = alignment.coverage(clip.read([span[0]])[0].shape)
        found = spot(faces, config.spotting, sample.fps, seen=seen)
        meta = {
            "apex": span[found.apex],
            "apex_source": APEX_SPOTTED,
            "apex_method": found.method,
            "apex_confidence": round(found.confidence, 4),
        }
    x, landmarks = clip_output(sample, clip, span, meta["apex"], alignment, config)
    if landmarks is not None:
        meta["landmarks"] = landmarks
    return x, meta
