"""`prepare`: samples -> model inputs (flow maps, apex faces or frame sequences), cached.

One clip is one unit of work (`merkit.preprocess.clip`: align the face once, choose the apex,
compute the requested output; `merkit predict` uses the same code). Here the clips run in a
process pool, each result is cached as soon as it exists, and a clip that fails is reported with
its reason while the others continue.

Value scale: "maps" outputs are min-max scaled per channel to 0..1, exactly like the published
28x28 maps after /255, so a model sees one distribution whether its inputs were computed here
or read from the published PNGs (`raw_flow=True` keeps pixels and raw strain instead).
"apex" and "sequence" outputs are gray (or RGB) intensities / 255, held as uint8 (x 255) and,
with a cache folder, memory-mapped from it (`merkit.preprocess.arrays`).

"regions" outputs are "maps" cut into a mosaic of patches around five facial points of the
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

import numpy as np
from rich.console import Console
from rich.progress import Progress

from merkit.data.sample import Sample
from merkit.errors import ConfigError, MerkitError
from merkit.preprocess.arrays import ARRAYS_DIR, ArrayStore, storage_dtype, store_key, stored
from merkit.preprocess.cache import ArrayCache, sample_key
from merkit.preprocess.clip import prepare_sample
from merkit.preprocess.config import MOTION_KINDS, ON_ERROR, PrepareConfig
from merkit.preprocess.flow import (
    flow_map_name,
    write_flow_map,
)
from merkit.preprocess.landmarks import POINT_SOURCES
from merkit.preprocess.published import is_flow_map_sample, published_map
from merkit.workers import WorkerPool

LOW_CONFIDENCE = 0.5  # a spotted apex under this is counted in the notes as unsure


@dataclass
class Prepared:
    """Arrays of the samples that succeeded (same order as given) and the failures."""

    x: np.ndarray  # (N, *config.item_shape): float32 maps, uint8 frames (arrays.storage_dtype)
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


def _compute_and_cache(
    sample: Sample, config: PrepareConfig, cache_root: Path | None, key: str | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Worker entry point: compute one clip and cache it at once (so interruptions resume);
    `key` None: not cached as a whole (a published map's mosaic: only its points are)."""
    x, meta = prepare_sample(sample, config, cache_root)
    x = stored(x, config)
    if cache_root is not None and key is not None:
        ArrayCache(cache_root).save(key, x, meta)
    return x, meta


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
    maps = next((s for s in samples if is_flow_map_sample(s)), None)
    if maps is not None and config.apex_policy == "spot":
        raise ConfigError(
            f"apex_policy 'spot': the samples are published flow maps (e.g. {maps.uid}), "
            "computed from their annotated apex, with no frames to spot one in; use apex_policy "
            "'annotated' with flow-map data"
        )
    if cache_dir is not None:
        cache_dir = output_folder(cache_dir, "cache folder")
    keys = [
        None if is_flow_map_sample(sample) else sample_key(sample, config) for sample in samples
    ]
    in_file = cache_dir is not None and config.output not in MOTION_KINDS
    store = ArrayStore(
        len(samples),
        config.item_shape,
        storage_dtype(config),
        cache_dir / ARRAYS_DIR if in_file else None,
        store_key([key or "" for key in keys]),
    )
    collected = _Collected(store, on_error)
    try:
        pending, hits = _read_ready(samples, keys, config, cache_dir, collected)
        outcomes = _run_clips(samples, pending, config, cache_dir, workers or default_workers())
        if progress and pending:
            with Progress(console=Console(stderr=True, markup=False), transient=True) as bar:
                task = bar.add_task(f"preparing {config.output}", total=len(pending))
                for index, outcome in outcomes:
                    collected.record(index, outcome)
                    bar.advance(task)
        else:
            for index, outcome in outcomes:
                collected.record(index, outcome)
    except BaseException:
        store.discard()  # a stopped run leaves no half-written array file
        raise
    metas = collected.metas
    computed = sum(1 for index, key in pending if index in metas and key is not None)
    kept = sorted(metas)
    x = store.finish(kept)
    return _assemble(samples, kept, x, metas, collected.errors, config, hits, computed, started)


class _Collected:
    """Results as they arrive: arrays into the store, metadata and failures by sample index."""

    def __init__(self, store: ArrayStore, on_error: str) -> None:
        self.store, self.on_error = store, on_error
        self.metas: dict[int, dict[str, Any]] = {}
        self.errors: dict[int, str] = {}

    def record(
        self, index: int, outcome: tuple[np.ndarray, dict[str, Any]] | BaseException
    ) -> None:
        if isinstance(outcome, BaseException):
            if self.on_error == "stop":
                raise outcome
            self.errors[index] = _reason(outcome)
        else:
            self.store.put(index, outcome[0])
            self.metas[index] = outcome[1]


def _read_ready(
    samples: Sequence[Sample],
    keys: Sequence[str | None],
    config: PrepareConfig,
    cache_dir: Path | None,
    collected: _Collected,
) -> tuple[list[PendingClip], int]:
    """Record what needs no computing (published maps, cache hits); the clips left to compute
    and the number of cache hits."""
    cache = ArrayCache(cache_dir) if cache_dir is not None else None
    pending: list[PendingClip] = []
    hits = 0
    for index, sample in enumerate(samples):
        if is_flow_map_sample(sample) and config.output == "regions":
            pending.append((index, None))  # the points need a face stage: the pool's work
            continue
        if is_flow_map_sample(sample):
            try:
                outcome: tuple[np.ndarray, dict[str, Any]] | BaseException = (
                    published_map(sample, config),
                    {},
                )
            except MerkitError as exc:
                outcome = exc
            collected.record(index, outcome)
            continue
        entry = cache.load(keys[index]) if cache is not None else None
        if entry is None:
            pending.append((index, keys[index]))
        else:
            collected.record(index, (entry.x, entry.meta))
            hits += 1
    return pending, hits


def _assemble(
    samples: Sequence[Sample],
    kept: list[int],
    x: np.ndarray,
    metas: dict[int, dict[str, Any]],
    errors: dict[int, str],
    config: PrepareConfig,
    hits: int,
    computed: int,
    started: float,
) -> Prepared:
    """The prepared samples (apex updated where it was spotted) beside their array `x`."""
    prepared, landmarks = [], []
    for index in kept:
        sample, meta = samples[index], metas[index]
        if meta.get("apex_method"):
            spotted = {k: str(meta[k]) for k in ("apex_method", "apex_confidence")}
            sample = dataclasses.replace(
                sample,
                apex=meta["apex"],
                apex_source=meta["apex_source"],
                meta={**sample.meta, **spotted},
            )
        prepared.append(sample)
        if config.output == "regions":
            landmarks.append(meta["landmarks"])
    failed = [(samples[i].uid, errors[i]) for i in sorted(errors)]
    seconds = time.perf_counter() - started
    notes = spotting_notes(prepared, config)
    return Prepared(x, prepared, failed, config, hits, seconds, computed, notes, landmarks)


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
    """Write every "maps" array as a published-format PNG `{subject}_{filename} .png`."""
    if prepared.config.output != "maps":
        raise ConfigError(
            f"only 'maps' outputs can be exported as flow-map PNGs, not {prepared.config.output!r}"
        )
    folder = output_folder(folder, "flow-map folder")
    paths = []
    for sample, maps in zip(prepared.samples, prepared.x, strict=True):
        path = folder / flow_map_name(sample.subject, sample.clip)
        write_flow_map(path, maps)
        paths.append(path)
    return paths
