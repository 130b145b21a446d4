"""Spot the apex of every clip of a dataset whose apex is annotated, as `merkit spot` scores it.

Two clip shapes: a dataset episode (onset..offset as annotated: what `merkit prepare` spots in,
e.g. for SMIC) and a whole recording (every frame of the clip's folder: what `merkit predict`
sees, located with `timing.locate` exactly as predict does). Frames are read and aligned once per
clip, then every asked-for method runs on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from merkit.data.sample import APEX_ANNOTATED, Sample
from merkit.errors import ConfigError, MerkitError
from merkit.evaluation.spotting import SpottedClip
from merkit.inference.timing import locate
from merkit.preprocess.clip import aligned_faces
from merkit.preprocess.config import PrepareConfig
from merkit.preprocess.spotting import default_window, get_method, spot
from merkit.workers import WorkerPool


@dataclass(frozen=True)
class SpotSettings:
    """What to spot with, and on which frames."""

    methods: tuple[str, ...]
    whole_clip: bool = False  # every frame of the folder instead of onset..offset
    window: int | None = None  # frames, for whole clips (None: 0.2 s at the clip's rate)
    fps: float | None = None  # the rate of clips whose dataset does not give one
    prepare: PrepareConfig = PrepareConfig()  # alignment: aligned, crop_size, margin

    def __post_init__(self) -> None:
        if not self.methods:
            raise ConfigError("give at least one spotting method")
        for method in self.methods:
            get_method(method)
        if self.window is not None and self.window < 2:
            raise ConfigError(f"spotting window {self.window}: expected at least 2 frames")


def scorable(samples: Sequence[Sample]) -> tuple[list[Sample], list[tuple[str, str]]]:
    """The samples with an annotated apex among their frames, and why the others are left out."""
    kept, left = [], []
    for sample in samples:
        if sample.apex_source != APEX_ANNOTATED or sample.apex is None:
            left.append((sample.uid, f"apex not annotated ({sample.apex_source})"))
        elif sample.apex not in sample.frame_numbers:
            left.append((sample.uid, f"annotated apex {sample.apex} is not among its frames"))
        else:
            kept.append(sample)
    return kept, left


def clip_fps(sample: Sample, fallback: float | None) -> float:
    """The clip's frame rate: the loader's, else `fallback`; ConfigError naming it otherwise."""
    rate = float(sample.meta.get("fps", 0) or 0) or fallback
    if not rate or rate <= 0:
        raise ConfigError(f"{sample.uid}: its dataset gives no frame rate; pass one (--fps)")
    return rate


def spot_one(sample: Sample, settings: SpotSettings) -> list[SpottedClip]:
    """The clip's spotted apex by each method, beside its annotated apex."""
    fps = clip_fps(sample, settings.fps)
    span, faces = aligned_faces(sample, settings.prepare, settings.whole_clip)
    rows = []
    for method in settings.methods:
        if settings.whole_clip:
            timing = locate(faces, settings.window or default_window(fps), method=method)
            apex, found = timing.apex, timing.spot
        else:
            found = spot(faces, method)
            apex = found.apex
        assert found is not None  # nothing was given, so the apex was spotted
        rows.append(
            SpottedClip(
                dataset=sample.dataset,
                subject=sample.subject,
                sample=sample.clip,
                method=method,
                first=span[0],
                last=span[-1],
                fps=fps,
                annotated=int(sample.apex),
                spotted=span[apex],
                confidence=round(found.confidence, 4),
            )
        )
    return rows


def _spot_safely(sample: Sample, settings: SpotSettings) -> list[SpottedClip] | str:
    """Rows, or one sentence naming the clip (bugs keep their type, so they stay visible)."""
    try:
        return spot_one(sample, settings)
    except MerkitError as exc:
        return str(exc)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        return f"{sample.uid}: {type(exc).__name__}: {lines[0] if lines else ''}"


def spot_samples(
    samples: Sequence[Sample],
    settings: SpotSettings,
    workers: int = 1,
    on_done: Callable[[], None] | None = None,
) -> tuple[list[SpottedClip], list[tuple[str, str]]]:
    """Rows of every clip (in sample order) and the clips that failed, with the reason."""
    outcomes: list[list[SpottedClip] | str] = [""] * len(samples)
    if workers <= 1 or len(samples) <= 1:
        for i, sample in enumerate(samples):
            outcomes[i] = _spot_safely(sample, settings)
            if on_done is not None:
                on_done()
    else:
        with WorkerPool(min(workers, len(samples))) as pool:
            tasks = [(sample, settings) for sample in samples]
            for index, future in pool.run(_spot_safely, tasks):
                outcomes[index] = future.result()
                if on_done is not None:
                    on_done()
    rows = [row for outcome in outcomes if not isinstance(outcome, str) for row in outcome]
    failed = [(s.uid, o) for s, o in zip(samples, outcomes, strict=True) if isinstance(o, str)]
    return rows, failed
