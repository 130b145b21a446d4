"""When the micro-expression happens in a clip: onset, apex and offset, and how each was found.

Given frames come first. A short clip (under two spotting windows: too little neutral context to
contrast a movement against) is taken as one expression from its first to its last frame, with the
apex spotted as in `merkit prepare`. A long clip is searched with `spotting.spot_intervals`; the
strongest movement at least half a window from the clip's ends (where the spotting contrast has
no context) is then timed by `spotting.fit_movement`, a raised-cosine movement template fitted to
a motion profile focused on the moving region. On clear synthetic clips onset and apex land
within about 3 frames at 200 fps. This module only decides which of those steps applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from merkit.errors import ConfigError
from merkit.preprocess.spotting import fit_movement, spot_apex, spot_intervals

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
    score: float | None = None  # the spot's contrast, when it was spotted in a long clip


def locate(
    faces: np.ndarray,
    window: int,
    onset: int | None = None,
    apex: int | None = None,
    offset: int | None = None,
) -> Timing:
    """Onset/apex/offset of the expression in aligned grayscale faces (T, S, S).

    `onset`/`apex`/`offset` are indices the user gave; an apex needs its onset.
    """
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
        return Timing(onset, onset + spot_apex(faces[onset : end + 1]), end, sources)
    if len(faces) >= 2 * window:
        half = window // 2
        spots = [
            s for s in spot_intervals(faces, window, threshold=0.0) if half <= s.apex <= last - half
        ]
        if spots:
            on, top, off = fit_movement(faces, spots[0].apex, window)
            return Timing(
                on, top, off, dict.fromkeys(("onset", "apex", "offset"), SPOTTED), spots[0].score
            )
    return Timing(
        0, spot_apex(faces), last, {"onset": CLIP_START, "apex": SPOTTED, "offset": CLIP_END}
    )


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
