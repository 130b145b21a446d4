"""`merkit spot`'s runner: spot the apex of every clip of a dataset whose apex is annotated.

Two clip shapes: a dataset episode (onset..offset as annotated: what `merkit prepare` spots in,
e.g. for SMIC) and a whole recording (every frame of the clip's folder: what `merkit predict`
sees, located with `merkit.preprocess.spotting.locate` exactly as predict does). Frames are read
and aligned once per clip, then every asked-for method runs on them, at the clip's frame rate:
the one its loader states, or the one the user gives (`--fps`, which wins: for clips whose
stated rate is wrong). The scoring itself is `merkit.evaluation.spotting`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from merkit.data.sample import APEX_ANNOTATED, Sample
from merkit.errors import ConfigError, MerkitError
from merkit.evaluation.spotting import SpottedClip
from merkit.preprocess.clip import aligned_faces
from merkit.preprocess.config import PrepareConfig
from merkit.preprocess.spotting import check_fps, get_method, locate, spot
from merkit.workers import WorkerPool

NOT_ANNOTATED = "apex not annotated"


@dataclass(frozen=True)
class SpotSettings:
    """What to spot with, and on which frames."""

    methods: tuple[str, ...]
    whole_clip: bool = False  # every frame of the folder instead of onset..offset
    window: int | None = None  # frames, for whole clips (None: 0.2 s at the clip's rate)
    fps: float | None = None  # every clip's rate, over what its loader states
    prepare: PrepareConfig = PrepareConfig()  # alignment: aligned, crop_size, margin

    def __post_init__(self) -> None:
        if not self.methods:
            raise ConfigError("give at least one spotting method")
        for method in self.methods:
            get_method(method)
        if self.window is not None and self.window < 2:
            raise ConfigError(f"spotting window {self.window}: expected at least 2 frames")
        if self.fps is not None:
            check_fps(self.fps)


def scorable(
    samples: Sequence[Sample], whole_clip: bool = False
) -> tuple[list[Sample], list[tuple[str, str]]]:
    """The samples with an annotated apex among their frames and more than one frame to spot in
    (onset to offset, or the whole folder for `whole_clip`), and why the others are left out:
    a 1-frame clip's apex is its only frame, which says nothing about spotting."""
    kept, left = [], []
    for sample in samples:
        if sample.apex_source != APEX_ANNOTATED or sample.apex is None:
            left.append((sample.uid, f"{NOT_ANNOTATED} ({sample.apex_source})"))
        elif sample.apex not in sample.frame_numbers:
            left.append((sample.uid, f"annotated apex {sample.apex} is not among its frames"))
        elif _frames_to_spot(sample, whole_clip) < 2:
            left.append((sample.uid, "1 frame (onset = apex = offset): nothing to spot"))
        else:
            kept.append(sample)
    return kept, left


def _frames_to_spot(sample: Sample, whole_clip: bool) -> int:
    numbers = sample.frame_numbers
    if whole_clip or sample.onset is None or sample.offset is None:
        return len(numbers)
    return sum(sample.onset <= n <= sample.offset for n in numbers)


def clip_fps(sample: Sample, given: float | None) -> float:
    """The clip's frame rate: `given` (the user's), else its loader's; ConfigError naming the
    clip where neither is known."""
    rate = given or sample.fps
    if rate is None:
        raise ConfigError(f"{sample.uid}: its dataset gives no frame rate; pass one (--fps)")
    return rate


def spot_one(sample: Sample, settings: SpotSettings) -> list[SpottedClip]:
    """The clip's spotted apex by each method, beside its annotated apex."""
    fps = clip_fps(sample, settings.fps)
    span, faces, seen, crop = aligned_faces(sample, settings.prepare, settings.whole_clip)
    rows = []
    for method in settings.methods:
        if settings.whole_clip:
            timing = locate(faces, fps, method=method, window=settings.window, seen=seen)
            apex, found = timing.apex, timing.spot
        else:
            found = spot(faces, method, fps, seen=seen)
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
                face=crop,
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
