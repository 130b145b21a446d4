"""`prepare`: samples -> model inputs (flow maps, apex faces or frame sequences), cached.

One clip is one unit of work: read the onset frame, align the face once, choose the apex
(annotated, or spotted where unknown, by `config.spotting`: see `merkit.preprocess.spotting`),
then compute the requested output. The first and last
steps (`align_clip`, `clip_output`) are public so that `merkit predict` prepares a video with the
same code and the same input checks. Clips run in a process pool, each result is cached as soon
as it exists, and a clip that fails is reported with its reason while the others continue.

Value scale: "flow" outputs are min-max scaled per channel to 0..1, exactly like the published
28x28 maps after /255, so a model sees one distribution whether its inputs were computed here
or read from the published PNGs (`raw_flow=True` keeps pixels and raw strain instead).
"apex" and "sequence" outputs are gray (or RGB) intensities / 255.

"regions" outputs are "flow" maps cut into a mosaic of patches around five facial points of the
apex face (`merkit.preprocess.regions`, HTNet's input): for a clip, the points are found on its
aligned apex face; for a published map, on the apex face image the loader recorded beside it
(`Sample.meta["apex_face"]`), with the points cached per image under `cache_dir/points`. Where
no face is found, HTNet's fixed points stand in; each sample's metadata says which
(`Prepared.landmark_counts`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.progress import Progress

from merkit.data.sample import APEX_ANNOTATED, APEX_FACE, APEX_SPOTTED, Sample
from merkit.errors import AnnotationError, ConfigError, DataLayoutError, MerkitError
from merkit.preprocess.cache import ArrayCache, sample_key
from merkit.preprocess.config import MOTION_KINDS, ON_ERROR, PrepareConfig
from merkit.preprocess.face import Alignment, estimate_alignment, is_cropped_release
from merkit.preprocess.flow import (
    compute_flow,
    flow_map_name,
    minmax_scale,
    motion_maps,
    write_flow_map,
)
from merkit.preprocess.flowmaps import read_flow_map
from merkit.preprocess.frames import ClipFrames
from merkit.preprocess.landmarks import POINT_SOURCES, find_points, image_points
from merkit.preprocess.magnify import magnify
from merkit.preprocess.regions import fallback_points, region_layout, region_mosaic, rescale_points
from merkit.preprocess.spotting import spot
from merkit.workers import WorkerPool

POINTS_FOLDER = "points"  # under the cache folder: five facial points per face image
# A face crop may enlarge its source up to this factor (synthetic 48 px faces in a 128 crop are
# fine); beyond it the crop is interpolation, which optical flow reads as motion.
MAX_UPSCALE = 4.0
LOW_CONFIDENCE = 0.5  # a spotted apex under this is counted in the notes as unsure


@dataclass
class Prepared:
    """Arrays of the samples that succeeded (same order as given) and the failures."""

    x: np.ndarray  # (N, *config.item_shape) float32
    samples: list[Sample]  # apex / apex_source updated where the apex was spotted
    failed: list[tuple[str, str]]  # (uid, one-sentence reason)
    config: PrepareConfig
    cache_hits: int = 0
    seconds: float = 0.0
    computed: int = 0  # clips computed in this call (not cache hits, not published maps)
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. how apexes were spotted
    landmarks: list[str] = dataclasses.field(default_factory=list)  # per sample, "regions" only

    def landmark_counts(self) -> dict[str, int]:
        """How the facial points of a "regions" output were found: samples per source
        (detected face, whole image as the face box, HTNet's fallback); empty otherwise."""
        if not self.landmarks:
            return {}
        return {source: self.landmarks.count(source) for source in POINT_SOURCES}


def output_folder(path: Path, what: str, create: bool = True) -> Path:
    """`path` as a folder to write into (made if `create`); ConfigError when it cannot be one.

    Checked before any work starts, so a bad --out fails at once instead of on every clip.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: the {what} is a file; give a folder")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot create the {what} ({exc.strerror})") from None
    return path


def default_workers() -> int:
    return min(2, os.cpu_count() or 1)


# --- one clip ---------------------------------------------------------------------------------


def is_flow_map_sample(sample: Sample) -> bool:
    """A sample that is one published u/v/strain PNG (the megc2019-flow loader), not frames."""
    return not sample.frames and sample.path is not None and sample.path.suffix.lower() == ".png"


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


def _mosaic(
    maps: np.ndarray, points: np.ndarray | None, face_size: Any, config: PrepareConfig
) -> np.ndarray:
    """The region mosaic of `maps` around five points found on a face image of `face_size`
    (side, or (width, height)); HTNet's fallback points where none were found."""
    size = maps.shape[-1]
    at = fallback_points(size) if points is None else rescale_points(points, face_size, size)
    return region_mosaic(maps, at, region_layout(config.regions))


def clip_output(
    sample: Sample,
    clip: ClipFrames,
    span: list[int],
    apex: int,
    alignment: Alignment,
    config: PrepareConfig,
) -> np.ndarray:
    """One clip's model input once its apex is chosen: what `prepare` caches, `predict` classifies.

    `span` holds the clip's frame numbers from onset to offset; the outputs that read frames as
    a time series (magnified flow, sequences) refuse a gap in it, naming the missing frames.
    """
    return _clip_output(sample, clip, span, apex, alignment, config)[0]


def _clip_output(
    sample: Sample,
    clip: ClipFrames,
    span: list[int],
    apex: int,
    alignment: Alignment,
    config: PrepareConfig,
) -> tuple[np.ndarray, str | None]:
    """`clip_output` and, for "regions", how the facial points were found."""
    if config.output in MOTION_KINDS:
        if config.magnify > 0:
            require_contiguous(sample, [n for n in span if n <= apex], "magnification")
        maps = _flow_output(clip, span, apex, alignment, config)
        if config.output == "flow":
            return maps, None
        points, source = find_points(alignment.apply(_gray(clip.read([apex])[0])))
        return _mosaic(maps, points, config.crop_size, config), source
    output = alignment.resized(config.size)
    if config.output == "apex":
        return _image_output(clip, [apex], output)[0], None
    require_contiguous(sample, span, "a frame sequence")
    picks = np.linspace(0, len(span) - 1, config.frames).round().astype(int)
    return _image_output(clip, [span[i] for i in picks], output), None


def aligned_faces(
    sample: Sample, config: PrepareConfig, whole_clip: bool = False
) -> tuple[list[int], np.ndarray]:
    """The frame numbers and aligned grayscale faces that spotting reads: onset..offset (as
    `prepare` spots), or every frame of the clip's folder (a recording, as `predict` sees it)."""
    clip = ClipFrames(sample)
    span = list(clip.numbers) if whole_clip else _span(sample, clip)
    alignment = align_clip(sample, clip, span[0], config)
    require_contiguous(sample, span, "apex spotting")
    return span, _faces(clip, span, alignment)


def prepare_sample(
    sample: Sample, config: PrepareConfig, cache_dir: Path | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """One clip's array and its metadata ({"apex": number, "apex_source": ...}, and for
    "regions" {"landmarks": source}); `cache_dir` keeps the facial points of published maps."""
    if is_flow_map_sample(sample):
        if config.output != "regions":
            return _published_map(sample, config), {}
        x, source = _published_regions(sample, config, cache_dir)
        return x, {"landmarks": source}
    clip = ClipFrames(sample, color=config.color and config.output not in MOTION_KINDS)
    span = _span(sample, clip)
    alignment = align_clip(sample, clip, span[0], config)
    meta: dict[str, Any] = {"apex": sample.apex, "apex_source": sample.apex_source}
    known = sample.apex is not None and sample.apex_source == APEX_ANNOTATED and sample.apex in span
    if config.apex_policy == "spot" or not known:
        require_contiguous(sample, span, "apex spotting")
        found = spot(_faces(clip, span, alignment), config.spotting)
        meta = {
            "apex": span[found.apex],
            "apex_source": APEX_SPOTTED,
            "apex_method": found.method,
            "apex_confidence": round(found.confidence, 4),
        }
    x, landmarks = _clip_output(sample, clip, span, meta["apex"], alignment, config)
    if landmarks is not None:
        meta["landmarks"] = landmarks
    return x, meta


def _compute_and_cache(
    sample: Sample, config: PrepareConfig, cache_root: Path | None, key: str | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Worker entry point: compute one clip and cache it at once (so interruptions resume);
    `key` None: not cached as a whole (a published map's mosaic: only its points are)."""
    x, meta = prepare_sample(sample, config, cache_root)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if cache_root is not None and key is not None:
        ArrayCache(cache_root).save(key, x, meta)
    return x, meta


def _published_map(sample: Sample, config: PrepareConfig) -> np.ndarray:
    """A published map resized to the output size (re-scaled to 0..1 as computed maps are)."""
    if config.output not in MOTION_KINDS or config.raw_flow:
        raise ConfigError(
            f"{sample.path}: a published flow map holds only min-max scaled u/v/strain; "
            "use output='flow' (or 'regions') with raw_flow=False"
        )
    maps = read_flow_map(sample)
    if maps.shape[1:] == (config.size, config.size):
        return maps
    interp = cv2.INTER_AREA if config.size < maps.shape[1] else cv2.INTER_LINEAR
    resized = [cv2.resize(c, (config.size, config.size), interpolation=interp) for c in maps]
    return minmax_scale(np.stack(resized))


def _published_regions(
    sample: Sample, config: PrepareConfig, cache_dir: Path | None
) -> tuple[np.ndarray, str]:
    """The region mosaic of a published map around the points of its apex face image."""
    maps = _published_map(sample, config)
    face = sample.meta.get(APEX_FACE)
    if face is None:
        raise DataLayoutError(
            f"{sample.path}: no apex face image for {sample.uid}; a 'regions' output needs one "
            f"(e.g. ROOT/apex/{sample.subject}_{sample.clip}.jpg)"
        )
    points_cache = cache_dir / POINTS_FOLDER if cache_dir is not None else None
    points, source, face_size = image_points(Path(face), cache_dir=points_cache)
    return _mosaic(maps, points, face_size, config), source


# --- many clips -------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """One line for the failure table; non-user errors keep their type so bugs stay visible."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    return first if isinstance(exc, MerkitError) else f"{type(exc).__name__}: {first}"


# (index into samples, cache key) of a clip still to compute; key None: not cached as a whole
PendingClip = tuple[int, str | None]


def _run_clips(
    samples: Sequence[Sample],
    pending: list[PendingClip],
    config: PrepareConfig,
    cache_root: Path | None,
    workers: int,
) -> Iterator[tuple[int, tuple[np.ndarray, dict[str, Any]] | BaseException]]:
    """Yield (index, result or exception) as clips finish; a pool only when it can help."""
    if workers <= 1 or len(pending) <= 1:
        for index, key in pending:
            try:
                yield index, _compute_and_cache(samples[index], config, cache_root, key)
            except Exception as exc:
                yield index, exc
        return
    tasks = [(samples[i], config, cache_root, key) for i, key in pending]
    with WorkerPool(min(workers, len(pending))) as pool:
        for position, future in pool.run(_compute_and_cache, tasks):
            exc = future.exception()
            yield pending[position][0], exc if exc is not None else future.result()


def prepare(
    samples: Sequence[Sample],
    config: PrepareConfig | None = None,
    cache_dir: Path | None = None,
    workers: int | None = None,
    on_error: str = "skip",
    progress: bool = True,
) -> Prepared:
    """Compute (or load from `cache_dir`) every sample's array; see the module docstring.

    Published flow-map samples are read directly (no pool, no cache: reading is faster than a
    cache lookup). `on_error="skip"` records failures in `Prepared.failed` and goes on;
    `"stop"` raises the first one.
    """
    config = config or PrepareConfig()
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error {on_error!r} must be one of {ON_ERROR}")
    started = time.perf_counter()
    results: dict[int, tuple[np.ndarray, dict[str, Any]]] = {}
    errors: dict[int, str] = {}

    def record(index: int, outcome: tuple[np.ndarray, dict[str, Any]] | BaseException) -> None:
        if isinstance(outcome, BaseException):
            if on_error == "stop":
                raise outcome
            errors[index] = _reason(outcome)
        else:
            results[index] = outcome

    if cache_dir is not None:
        cache_dir = output_folder(cache_dir, "cache folder")
    cache = ArrayCache(cache_dir) if cache_dir is not None else None
    pending: list[PendingClip] = []
    hits = 0
    for index, sample in enumerate(samples):
        if is_flow_map_sample(sample) and config.output == "regions":
            pending.append((index, None))  # finding the points takes a face stage: the pool's work
            continue
        if is_flow_map_sample(sample):
            try:
                outcome: tuple[np.ndarray, dict[str, Any]] | BaseException = (
                    _published_map(sample, config),
                    {},
                )
            except MerkitError as exc:
                outcome = exc
            record(index, outcome)
            continue
        key = sample_key(sample, config)
        entry = cache.load(key) if cache is not None else None
        if entry is None:
            pending.append((index, key))
        else:
            results[index] = (entry.x, entry.meta)
            hits += 1

    outcomes = _run_clips(samples, pending, config, cache_dir, workers or default_workers())
    if progress and pending:
        with Progress(console=Console(stderr=True, markup=False), transient=True) as bar:
            task = bar.add_task(f"preparing {config.output}", total=len(pending))
            for index, outcome in outcomes:
                record(index, outcome)
                bar.advance(task)
    else:
        for index, outcome in outcomes:
            record(index, outcome)
    computed = sum(1 for index, key in pending if index in results and key is not None)
    return _assemble(samples, results, errors, config, hits, computed, started)


def _assemble(
    samples: Sequence[Sample],
    results: dict[int, tuple[np.ndarray, dict[str, Any]]],
    errors: dict[int, str],
    config: PrepareConfig,
    hits: int,
    computed: int,
    started: float,
) -> Prepared:
    kept, arrays, landmarks = [], [], []
    for index, sample in enumerate(samples):
        if index not in results:
            continue
        x, meta = results[index]
        if meta.get("apex_method"):
            spotted = {k: str(meta[k]) for k in ("apex_method", "apex_confidence")}
            sample = dataclasses.replace(
                sample,
                apex=meta["apex"],
                apex_source=meta["apex_source"],
                meta={**sample.meta, **spotted},
            )
        kept.append(sample)
        arrays.append(x)
        if config.output == "regions":
            landmarks.append(meta["landmarks"])
    x = (
        np.stack(arrays).astype(np.float32, copy=False)
        if arrays
        else np.zeros((0, *config.item_shape), np.float32)
    )
    failed = [(samples[i].uid, errors[i]) for i in sorted(errors)]
    seconds = time.perf_counter() - started
    notes = spotting_notes(kept, config)
    return Prepared(x, kept, failed, config, hits, seconds, computed, notes, landmarks)


def spotting_notes(samples: Sequence[Sample], config: PrepareConfig) -> list[str]:
    """One line saying how many apexes were spotted, by which method, and why."""
    spotted = [s for s in samples if s.meta.get("apex_method")]
    if not spotted:
        return []
    methods = sorted({s.meta["apex_method"] for s in spotted})
    why = (
        "apex_policy 'spot'"
        if config.apex_policy == "spot"
        else "their apex is not annotated (e.g. SMIC) or not a frame of the clip"
    )
    low = sum(float(s.meta["apex_confidence"]) < LOW_CONFIDENCE for s in spotted)
    return [
        f"apex spotted by {', '.join(methods)} in {len(spotted)} of {len(samples)} clips ({why}); "
        f"{low} of them with spotting confidence under {LOW_CONFIDENCE}"
    ]


def export_flow_maps(prepared: Prepared, folder: Path) -> list[Path]:
    """Write every "flow" array as a published-format PNG `{subject}_{filename} .png`."""
    if prepared.config.output != "flow":
        raise ConfigError(
            f"only 'flow' outputs can be exported as maps, not {prepared.config.output!r}"
        )
    folder = output_folder(folder, "flow-map folder")
    paths = []
    for sample, maps in zip(prepared.samples, prepared.x, strict=True):
        path = folder / flow_map_name(sample.subject, sample.clip)
        write_flow_map(path, maps)
        paths.append(path)
    return paths
