"""`Predictor`: a video file or frame folder in, the micro-expression's timing and class out.

Stages (each timed): read the frames; find and align the face once, on the onset frame (or the
first frame when the onset is to be spotted); locate onset/apex/offset (`spotting.locate`, with
the spotting method the checkpoint's preprocessing names unless one is asked for, at the frame
rate the user gives, else the video's, else DEFAULT_FPS); compute
the model input with the checkpoint's own `PrepareConfig` through the one-clip functions that
`merkit prepare` uses (`merkit.preprocess.clip`: `align_clip`, `clip_output`), so flow method,
sizes, scaling and the input checks (face size, missing frames) match training; classify;
optionally draw a picture. Frame numbers are those in the file names for a folder, 0-based for
a video.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from torch import nn

from merkit.data.files import clip_frames, is_video
from merkit.data.sample import Sample
from merkit.errors import ConfigError, DataLayoutError, MerkitError
from merkit.inference.checkpoint import CheckpointMeta, load_checkpoint
from merkit.inference.export import OnnxBackend
from merkit.inference.picture import (
    SPATIAL_ATTENTION,
    MotionCurve,
    attention_map,
    render_picture,
    write_picture,
)
from merkit.models.inputs import inference_input
from merkit.preprocess import clip as clip_stage
from merkit.preprocess.arrays import as_float32
from merkit.preprocess.clip import MIN_FRAMES
from merkit.preprocess.config import MOTION_KINDS
from merkit.preprocess.face import Alignment
from merkit.preprocess.flow import compute_flow
from merkit.preprocess.frames import ClipFrames
from merkit.preprocess.spotting import (
    DEFAULT_FPS,
    Timing,
    check_fps,
    default_window,
    get_method,
    given_timing,
    locate,
)
from merkit.training.augment import hflip_flow
from merkit.training.devices import resolve_device
from merkit.workers import WorkerPool


class Backend(Protocol):
    """What the predictor needs from a model: probabilities, and its spatial attention if it
    has some (`picture.attention_map`)."""

    meta: CheckpointMeta

    def probabilities(self, x: np.ndarray) -> np.ndarray: ...

    def attention(self, x: np.ndarray) -> np.ndarray | None: ...


class TorchBackend:
    """A checkpoint's PyTorch model, on `device` (a checkpoint loads on any device)."""

    def __init__(self, model: nn.Module, meta: CheckpointMeta, device: str = "cpu") -> None:
        self.device = resolve_device(device)
        self.model, self.meta = model.to(self.device).eval(), meta

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(as_float32(x))).to(self.device)
        with torch.no_grad():
            logits = self.model(batch)
        return logits.float().softmax(-1).cpu().numpy()

    def attention(self, x: np.ndarray) -> np.ndarray | None:
        return attention_map(self.model, x)


def finite_probabilities(probs: np.ndarray, model: str | Path, inputs: str | Path) -> np.ndarray:
    """`probs`, refused in one sentence naming the model and the input when any is NaN or
    infinite (overflowing weights or a damaged input): a NaN is never reported as a class."""
    if not np.isfinite(probs).all():
        raise ConfigError(
            f"{model}: the model answered NaN or infinite probabilities for {inputs}; no class "
            "is reported (check the weights and the input)"
        )
    return probs


def load_backend(path: str | Path, device: str = "cpu") -> Backend:
    """An exported `.onnx` model (onnxruntime, on the CPU) or a `.pt` checkpoint (PyTorch, on
    `device`)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxBackend(path)
    return TorchBackend(*load_checkpoint(path), device)


@dataclass
class InputClip:
    """An input's frames (decoded lazily by ClipFrames) and what is known about it."""

    path: Path
    frames: ClipFrames
    sample: Sample
    fps: float | None

    @property
    def numbers(self) -> list[int]:
        return self.frames.numbers

    def index(self, number: int | None) -> int | None:
        """Position of frame `number`; a DataLayoutError naming the clip if it has none."""
        if number is None:
            return None
        try:
            return self.numbers.index(number)
        except ValueError:
            raise DataLayoutError(
                f"{self.path}: no frame numbered {number} "
                f"(its frames run {self.numbers[0]}..{self.numbers[-1]})"
            ) from None


def _video_fps(path: Path) -> float | None:
    capture = cv2.VideoCapture(str(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return float(fps) if fps and fps > 0 else None


def read_input(path: str | Path, color: bool = False) -> InputClip:
    """Open a video file or a frame folder; errors name the file and what was expected."""
    path = Path(path)
    if path.is_dir():
        frames, numbers = clip_frames(path)
        fps = None
    elif path.is_file() and is_video(path):
        frames, numbers, fps = (), (), _video_fps(path)
    elif path.exists():
        raise DataLayoutError(f"{path}: not a video file (mp4, avi, ...) or a folder of frames")
    else:
        raise DataLayoutError(f"{path}: input does not exist; expected a video or frame folder")
    sample = Sample("input", "-", path.stem, path, "", -1, frames=frames, frame_numbers=numbers)
    clip = InputClip(path, ClipFrames(sample, color=color), sample, fps)
    if len(clip.numbers) < MIN_FRAMES:
        raise DataLayoutError(
            f"{path}: {len(clip.numbers)} frame(s); at least {MIN_FRAMES} are needed to see motion"
        )
    return clip


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def face_box(alignment: Alignment) -> list[int]:
    """The frame region (left, top, right, bottom) that the aligned face crop covers."""
    inverse = cv2.invertAffineTransform(alignment.matrix)
    side = alignment.size
    corners = np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], np.float64)
    points = corners @ inverse.T
    low, high = points.min(axis=0), points.max(axis=0)
    return [round(low[0]), round(low[1]), round(high[0]), round(high[1])]


def spotting_summary(timing: Timing, numbers: Sequence[int]) -> dict[str, Any]:
    """What spotting found, self-described: the method and what it follows, the confidence, how
    the eyes were found, the blinks it left out (first and last frame number of each), and the
    motion curve (per frame number) whose peak is the apex. Where the user gave onset and apex
    nothing was spotted: method, confidence and curve are empty."""
    found = timing.spot
    if found is None:
        empty: dict[str, Any] = {"method": None, "follows": None, "confidence": None}
        return {**empty, "eyes": None, "blinks": [], "noise": None, "frames": [], "motion": []}
    frames = timing.curve_frames(numbers)
    return {
        "method": found.method,
        "follows": get_method(found.method).follows,
        "confidence": round(found.confidence, 4),
        "eyes": found.eyes,
        "blinks": [[frames[a], frames[b]] for a, b in found.blinks],
        "noise": round(found.noise, 6),
        "frames": frames,
        "motion": [round(float(v), 6) for v in found.profile],
    }


@dataclass
class _Stopwatch:
    """Milliseconds per named stage; `on_stage(name)` is told as each stage starts."""

    times: dict[str, float] = field(default_factory=dict)
    on_stage: Callable[[str], None] | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.on_stage is not None:
            self.on_stage(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = round(1000 * (time.perf_counter() - start), 1)


@dataclass(frozen=True)
class Analysis:
    """One input as `Predictor.analyse` saw it, and the result `predict` returns for it."""

    clip: InputClip
    alignment: Alignment
    timing: Timing  # indices into clip.numbers
    x: np.ndarray  # the model input
    probabilities: np.ndarray
    result: dict[str, Any]


class Predictor:
    """A loaded model plus its preprocessing: `Predictor.load(path).predict(video)`."""

    def __init__(self, backend: Backend, source: str | Path = "") -> None:
        self.backend, self.source = backend, str(source)
        self.meta = backend.meta
        self.config = self.meta.prepare_config

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Predictor:
        """From a `.pt` checkpoint written by `merkit fit` (run on `device`) or an `.onnx` from
        `merkit export`."""
        return cls(load_backend(path, device), path)

    def predict(
        self,
        input: str | Path,
        onset: int | None = None,
        apex: int | None = None,
        offset: int | None = None,
        *,
        aligned: bool = False,
        window: int | None = None,
        spotting: str | None = None,
        fps: float | None = None,
        picture_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """Timing, face box, spotting, class probabilities and per-stage milliseconds of one input.

        `onset`/`apex`/`offset` are frame numbers the user knows (else spotted); `aligned`
        skips face detection for inputs that are already face crops; `window` is a movement's
        length in frames (default 0.2 s); `spotting` names the spotting method (default: the one
        the model's training data used); `fps` is the input's frame rate, over the one a video
        states (frame folders state none: DEFAULT_FPS).
        """
        options = {"aligned": aligned, "window": window, "spotting": spotting, "fps": fps}
        return self.analyse(input, onset, apex, offset, **options, picture_dir=picture_dir).result

    def analyse(
        self,
        input: str | Path,
        onset: int | None = None,
        apex: int | None = None,
        offset: int | None = None,
        *,
        aligned: bool = False,
        window: int | None = None,
        spotting: str | None = None,
        fps: float | None = None,
        picture_dir: str | Path | None = None,
        on_stage: Callable[[str], None] | None = None,
    ) -> Analysis:
        """`predict`, keeping what it saw (frames, alignment, timing, model input) for a tool
        that shows it; `on_stage(name)` is called as each stage (read, face, spotting, motion,
        model, picture) starts."""
        watch = _Stopwatch(on_stage=on_stage)
        method = get_method(spotting or self.config.spotting).name
        given_fps = None if fps is None else check_fps(fps)
        config = dataclasses.replace(self.config, aligned=True) if aligned else self.config
        started = time.perf_counter()
        with watch.stage("read"):
            clip = read_input(input, color=config.color and config.output not in MOTION_KINDS)
            known = [clip.index(n) for n in (onset, apex, offset)]
        numbers = clip.numbers
        rate = given_fps or clip.fps or DEFAULT_FPS
        window = window or default_window(rate)
        with watch.stage("face"):
            reference = known[0] or 0
            alignment = clip_stage.align_clip(
                clip.sample,
                clip.frames,
                numbers[reference],
                config,
                source=f"{clip.path} (frame {numbers[reference]})",
            )
        with watch.stage("spotting"):
            if known[0] is not None and known[1] is not None:
                timing = given_timing(len(numbers), *known)
            else:
                clip_stage.require_contiguous(clip.sample, numbers[reference:], "spotting")
                frames = clip.frames.read()
                faces = clip_stage.spotting_faces(frames, alignment)
                seen = alignment.coverage(frames.shape[1:])
                timing = locate(faces, rate, *known, method=method, window=window, seen=seen)
        span = numbers[timing.onset : max(timing.offset, timing.apex) + 1]
        with watch.stage("motion"):
            x, _ = clip_stage.clip_output(
                clip.sample, clip.frames, span, numbers[timing.apex], alignment, config
            )
        with watch.stage("model"):
            probs = finite_probabilities(self.probabilities(x), self.source, clip.path)
        face = {"box": face_box(alignment), "frame": numbers[reference], "crop": alignment.face}
        result = self._result(clip, face, timing, probs, rate, window, given_fps is not None)
        if picture_dir is not None:
            with watch.stage("picture"):
                result["picture"] = self._picture(clip, timing, alignment, x, probs, picture_dir)
        watch.times["total"] = round(1000 * (time.perf_counter() - started), 1)
        result["timings_ms"] = watch.times
        return Analysis(clip, alignment, timing, x, probs, result)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of one model input, with the flip test-time averaging the model
        was evaluated with, if its recipe asked for it (so predict agrees with the evaluation)."""
        recipe = self.meta.recipe
        if not (recipe.get("tta_flip") and self.config.output in MOTION_KINDS):
            return self.backend.probabilities(inference_input(self.meta.model, x[None]))[0]
        scaling = recipe.get("augment", {}).get("u_scaling", "minmax")
        mirrored = hflip_flow(torch.from_numpy(np.ascontiguousarray(x[None])), scaling).numpy()
        return self.backend.probabilities(np.concatenate([x[None], mirrored])).mean(axis=0)

    def _result(
        self,
        clip: InputClip,
        face: dict[str, Any],
        timing: Timing,
        probs: np.ndarray,
        fps: float,
        window: int,
        fps_given: bool,
    ) -> dict[str, Any]:
        numbers, names = clip.numbers, self.meta.class_names
        best = int(np.argmax(probs))
        return {
            "input": str(clip.path),
            "model": {"source": self.source, "name": self.meta.model, "flow": self.config.flow},
            "frames": len(numbers),
            "first_frame": numbers[0],  # times in the clip count from it
            "fps": clip.fps,
            "face": face,
            "onset": numbers[timing.onset],
            "apex": numbers[timing.apex],
            "offset": numbers[timing.offset],
            "timing_sources": timing.sources,
            "spotting": {
                "window": window,
                "fps": fps,
                "fps_assumed": clip.fps is None and not fps_given,
                **spotting_summary(timing, numbers),
            },
            "probabilities": {
                name: round(float(p), 6) for name, p in zip(names, probs, strict=True)
            },
            "predicted": names[best],
            "confidence": round(float(probs[best]), 6),
        }

    def _picture(
        self,
        clip: InputClip,
        timing: Timing,
        alignment: Alignment,
        x: np.ndarray,
        probs: np.ndarray,
        folder: str | Path,
    ) -> dict[str, Any]:
        """Write the picture; its path and which attention map it shows (None: flow only)."""
        onset, apex = (clip.numbers[i] for i in (timing.onset, timing.apex))
        faces = [alignment.apply(_gray(f)) for f in clip.frames.read([onset, apex])]
        flow = compute_flow(faces[0], faces[1], self.config.flow)
        found = self.backend.attention(inference_input(self.meta.model, x[None])[0])
        best = int(np.argmax(probs))
        caption = f"{self.meta.class_names[best]}, probability {probs[best]:.2f}\napex frame {apex}"
        curve = None
        if timing.spot is not None:
            frames = tuple(timing.curve_frames(clip.numbers))
            marks = tuple(clip.numbers[i] for i in (timing.onset, timing.apex, timing.offset))
            spot = timing.spot
            curve = MotionCurve(frames, spot.profile, marks, spot.method, spot.confidence)
        picture = render_picture(faces[1], flow, found, caption, curve)
        path = write_picture(Path(folder) / f"{clip.path.stem}.png", picture)
        return {"path": str(path), "attention": None if found is None else SPATIAL_ATTENTION}


# --- many inputs in a process pool --------------------------------------------------------------

_WORKER: Predictor | None = None


def _init_worker(model: str, device: str) -> None:
    global _WORKER
    _WORKER = Predictor.load(model, device)


def _predict_safely(
    predictor: Predictor, input: Path, options: dict[str, Any]
) -> dict[str, Any] | str:
    """A result, or one sentence naming the input (bugs keep their type, so they stay visible)."""
    try:
        return predictor.predict(input, **options)
    except MerkitError as exc:
        return str(exc)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        return f"{input}: {type(exc).__name__}: {lines[0] if lines else ''}"


def _worker_predict(input: Path, options: dict[str, Any]) -> dict[str, Any] | str:
    assert _WORKER is not None
    return _predict_safely(_WORKER, input, options)


def predict_many(
    model: str | Path,
    inputs: Sequence[str | Path],
    workers: int = 1,
    on_done: Callable[[], None] | None = None,
    device: str = "cpu",
    **options: Any,
) -> list[dict[str, Any] | str]:
    """Results (or error sentences) in input order; `workers` > 1 runs a process pool, which
    Ctrl-C stops after the videos in progress (the others are dropped)."""
    paths = [Path(p) for p in inputs]
    if workers <= 1 or len(paths) <= 1:
        predictor = Predictor.load(model, device)
        outcomes = []
        for path in paths:
            outcomes.append(_predict_safely(predictor, path, options))
            if on_done is not None:
                on_done()
        return outcomes
    Predictor.load(model, device)  # fail once, here, on a bad model file, not in every worker
    outcomes: list[dict[str, Any] | str] = [""] * len(paths)
    pool = WorkerPool(
        min(workers, len(paths)), threads=1, initializer=_init_worker, initargs=(str(model), device)
    )
    with pool:
        tasks = [(path, options) for path in paths]
        for index, future in pool.run(_worker_predict, tasks):
            outcomes[index] = future.result()
            if on_done is not None:
                on_done()
    return outcomes
