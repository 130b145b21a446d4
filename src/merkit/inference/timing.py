"""When the micro-expression happens in a clip: onset, apex and offset, and how each was found.

Given frames come first. A short clip (under two spotting windows: too little neutral context
around a movement) is taken as one expression from its first to its last frame, with the apex
spotted as `merkit prepare` spots it (`spotting.spot`, referenced to the clip's two ends). In a long
clip the references reach one window before and after each frame; around the apex found that
way `spotting.fit_movement` fits a raised-cosine movement template to a motion profile focused
on the moving region, for the onset and offset. On clear synthetic clips onset and apex land
within about 3 frames at 200 fps. This module only decides which of those steps applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from merkit.errors import ConfigError
from merkit.preprocess.config import DEFAULT_SPOTTING
from merkit.preprocess.spotting import Spot, fit_movement, spot

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
    window: int,
    onset: int | None = None,
    apex: int | None = None,
    offset: int | None = None,
    method: str = DEFAULT_SPOTTING,
) -> Timing:
    """Onset/apex/offset of the expression in aligned grayscale faces (T, S, S).

    `onset`/`apex`/`offset` are indices the user gave; an apex needs its onset. `method` names
    the spotting method (`merkit.preprocess.config.SPOTTING_METHODS`).
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
        found = spot(faces[onset : end + 1], method)
        return Timing(onset, onset + found.apex, end, sources, found, onset)
    if len(faces) >= 2 * window:
        found = spot(faces, method, window)
        on, off = fit_movement(faces, found.apex, window)
        spotted = dict.fromkeys(("onset", "apex", "offset"), SPOTTED)
        return Timing(on, found.apex, off, spotted, found)
    found = spot(faces, method)
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
