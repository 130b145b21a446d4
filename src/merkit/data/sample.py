"""The plain record every loader yields and every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# How the apex frame of a sample was obtained; recorded so results can say which clips relied on
# an estimate (SMIC has no apex annotation, some CASME II rows hold "/").
APEX_ANNOTATED = "annotated"
APEX_MIDDLE = "estimated-middle"
APEX_SPOTTED = "spotted"
APEX_NONE = "none"
# `Sample.meta` key of a sample's apex face image, where its loader knows one (the published
# flow maps come with HTNet's apex faces): the facial-region preparation finds its points there.
APEX_FACE = "apex_face"


@dataclass(frozen=True)
class Sample:
    """One micro-expression clip (or one precomputed motion map) and its annotation.

    `frames` lists the clip's frame files in temporal order and `frame_numbers` the frame index
    each file carries in its name (the numbers the annotation's onset/apex/offset refer to).
    Loaders fill these by listing folders; nothing is decoded here.
    """

    dataset: str  # source dataset ("casme2", "samm", "smic-hs", ...); for composites the source db
    subject: str  # subject id as the dataset writes it ("sub01", "006", "s01")
    clip: str  # clip id / file name of the annotation ("EP02_01f", "006_1_2", "s1_ne_01")
    path: Path | None  # the clip's frame folder, or the sample's single file (flow map, video)
    emotion: str  # the dataset's own emotion word, lower-cased
    label: int  # class index in the loader's taxonomy
    onset: int | None = None
    apex: int | None = None
    offset: int | None = None
    apex_source: str = APEX_NONE
    action_units: str = ""
    frames: tuple[Path, ...] = ()
    frame_numbers: tuple[int, ...] = ()
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def subject_key(self) -> str:
        """Subject identity that is unique across datasets (used to group folds)."""
        return f"{self.dataset}/{self.subject}"

    @property
    def fps(self) -> float | None:
        """The clip's frame rate as its loader states it (`meta["fps"]`), None where unknown."""
        try:
            rate = float(self.meta.get("fps", ""))
        except ValueError:
            return None
        return rate if rate > 0 and rate != float("inf") else None

    @property
    def uid(self) -> str:
        """Sample identity that is unique across datasets."""
        return f"{self.dataset}/{self.subject}/{self.clip}"
