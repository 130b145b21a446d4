"""When the movement happens in a clip: onset, apex and offset, and how each was found.

Given frames come first. Otherwise the apex is spotted in the whole clip (`methods.spot`, which
tries every reach itself). A clip shorter than two windows (too little neutral context around
a movement) is taken as one expression from its first to its last frame; in a longer one a
raised-cosine movement template is fitted (`fit_movement`) to a motion profile focused on the
moving region around the apex, for the onset and offset. On clear synthetic clips onset and
apex land within about 3 frames at 200 fps. `window` is a movement's length in frames
(`default_window`: WINDOW_MS at the clip's rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from merkit.errors import ConfigError
from merkit.preprocess.config import DEFAULT_SPOTTING
from merkit.preprocess.spotting.curve import thumbnails
from merkit.preprocess.spotting.methods import Spot, spot

WINDOW_MS = 200.0  # a micro-expression's onset-to-offset time: the spotting window
FOCUS_WIDTH = 64  # thumbnails of the template fit: its profile is an average, detail is noise


def default_window(fps: float) -> int:
    """The spotting window in frames at `fps` (WINDOW_MS, at least 4 frames)."""
    return max(4, round(WINDOW_MS * fps / 1000.0))


GIVEN = "given"
SPOTTED = "spotted"
CLIP_START = "clip-start"
CLIP_END = "clip-end"


@dataclass(frozen=True)
class Timing:
    """Positions (0-based indices into the clip's frames) and how each was obtained."""

    onset: int
    apex: int
    offset: int
    sources: dict[str, str]
    spot: Spot | None = None  # the spotting behind a spotted apex: its curve, confidence, method
    spot_start: int = 0  # the clip index of the curve's first frame

    def curve_frames(self, numbers: Sequence[int]) -> list[int]:
        """Frame numbers of the spotting curve's points (none where nothing was spotted)."""
        length = len(self.spot.profile) if self.spot is not None else 0
        return list(numbers[self.spot_start : self.spot_start + length])


def locate(
    faces: np.ndarray,
    fps: float,
    onset: int | None = None,
    apex: int | None = None,
    offset: int | None = None,
    method: str = DEFAULT_SPOTTING,
    window: int | None = None,
    seen: np.ndarray | None = None,
) -> Timing:
    """Onset/apex/offset of the expression in aligned grayscale faces (T, S, S) at `fps`.

    `onset`/`apex`/`offset` are indices the user gave; an apex needs its onset. `method` names
    the spotting method (`merkit.preprocess.config.SPOTTING_METHODS`); `window` (frames)
    defaults to `default_window(fps)`; `seen` marks the crop pixels that show the frame.
    """
    window = window or default_window(fps)
    last = len(faces) - 1
    check_order(onset, apex, offset)
    if onset is not None and apex is not None:
        return given_timing(len(faces), onset, apex, offset)
    if onset is not None:
        end = offset if offset is not None else min(last, onset + window)
        sources = {
            "onset": GIVEN,
            "apex": SPOTTED,
            "offset": GIVEN if offset is not None else "onset+window",
        }
        found = spot(faces[onset : end + 1], method, fps, seen=seen)
        return Timing(onset, onset + found.apex, end, sources, found, onset)
    found = spot(faces, method, fps, seen=seen)
    if len(faces) >= 2 * window:
        on, off = fit_movement(faces, found.apex, window)
        spotted = dict.fromkeys(("onset", "apex", "offset"), SPOTTED)
        return Timing(on, found.apex, off, spotted, found)
    sources = {"onset": CLIP_START, "apex": SPOTTED, "offset": CLIP_END}
    return Timing(0, found.apex, last, sources, found)


def check_order(onset: int | None, apex: int | None, offset: int | None) -> None:
    """User-given frames must come in order, and an apex needs its onset."""
    if apex is not None and onset is None:
        raise ConfigError("an apex frame was given without its onset frame; give both")
    given = [v for v in (onset, apex, offset) if v is not None]
    if given != sorted(given):
        raise ConfigError("the given frames must satisfy onset <= apex <= offset")


def given_timing(count: int, onset: int, apex: int, offset: int | None = None) -> Timing:
    """Onset and apex both given (no frames needed); the offset defaults to the last frame."""
    check_order(onset, apex, offset)
    end = max(apex, offset if offset is not None else count - 1)
    sources = {"onset": GIVEN, "apex": GIVEN, "offset": GIVEN if offset is not None else CLIP_END}
    return Timing(onset, apex, end, sources)


def raised_cosine(
    t: np.ndarray, onset: np.ndarray, apex: np.ndarray, offset: np.ndarray
) -> np.ndarray:
    """0 before onset, rising to 1 at apex, falling to 0 at offset (broadcasting)."""
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - onset) / (apex - onset), 0, 1))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.clip((t - apex) / (offset - apex), 0, 1))
    return np.where(t <= apex, rise, fall)


def focused_profile(faces: np.ndarray) -> np.ndarray:
    """Motion of every frame against the first, averaged where the clip moves (T,).

    A micro-expression moves a small part of the face; a whole-face mean (the spotting
    profile) drowns its first frames in sensor noise, which makes onsets look late. Weighting
    each thumbnail pixel by its mean motion over the clip keeps the moving region's signal.
    """
    thumbs = thumbnails(faces, FOCUS_WIDTH)
    motion = np.abs(thumbs - thumbs[0])
    weight = motion.mean(axis=0)
    return (motion * (weight / max(float(weight.sum()), 1e-12))).sum(axis=(1, 2))


def fit_movement(faces: np.ndarray, apex: int, window: int) -> tuple[int, int]:
    """(onset, offset) of the movement whose apex was spotted at `apex`, by a template fit.

    The profile is the focused motion of each frame against the frame `window` before the apex,
    smoothed over a tenth of a window (codecs add a periodic quality ripple); the model is
    `a + b * t + c * raised_cosine(t)` with c > 0 (the linear term absorbs head drift and
    lighting change), its peak at the apex, searched over onset/offset between an eighth of a
    window and a window from it. The fit uses every frame of the movement, so noise delays the
    onset far less than it delays a threshold crossing. The apex itself stays where `spot` put it:
    this profile, referenced to one frame, would drift towards the clip's end with the head.
    """
    first = max(0, apex - window)
    stop = min(len(faces), apex + window + 1)
    raw = focused_profile(faces[first:stop])[1:].astype(np.float64)  # frames first+1...
    width = max(1, window // 10)
    profile = np.convolve(np.pad(raw, width // 2, mode="edge"), np.ones(width) / width, "valid")
    n, quarter, step, shortest = (
        len(profile),
        window // 4,
        max(1, window // 20),
        max(1, window // 8),
    )
    top = int(np.clip(apex - first - 1, 1, n - 2))
    candidates = np.array(
        [
            (on, top, off)
            for on in range(top - shortest, max(-quarter, top - window) - 1, -step)
            for off in range(top + shortest, min(n + quarter, top + window) + 1, step)
        ],
        dtype=np.float64,
    )
    t = np.arange(n, dtype=np.float64)
    shape = raised_cosine(t, *(candidates[:, i, None] for i in range(3)))  # (K, n)
    # Normal equations of the fit on the basis (1, t, shape), per candidate.
    ones = np.ones(len(shape))
    s1, st, ss = shape.sum(1), shape @ t, (shape * shape).sum(1)
    gram = np.stack(
        [
            np.stack([ones * n, ones * t.sum(), s1], -1),
            np.stack([ones * t.sum(), ones * (t @ t), st], -1),
            np.stack([s1, st, ss], -1),
        ],
        -2,
    ) + 1e-9 * np.eye(3)
    rhs = np.stack([ones * profile.sum(), ones * (t @ profile), shape @ profile], -1)
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
    fitted = coef[:, :1] + coef[:, 1:2] * t + coef[:, 2:] * shape
    residual = ((fitted - profile) ** 2).sum(axis=1)
    residual[coef[:, 2] <= 0] = np.inf
    on, _, off = candidates[int(np.argmin(residual))].astype(int) + first + 1
    last = len(faces) - 1
    return int(np.clip(on, 0, apex)), int(np.clip(off, apex, last))
