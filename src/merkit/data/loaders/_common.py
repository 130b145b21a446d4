"""What every loader does the same way: collect samples, skips and notes; check a clip's frames.

A loader reads its own annotation format and then hands each row here, so the rules (dropped
emotions are reported, a missing apex is estimated and logged, onset/apex must exist among the
frames, duplicate ids are reported) are written once.

A bad row (blank or unreadable cell, negative frame number, a file name that is a path) is
skipped and listed in `SampleSet.skipped` with its row number; only a file that cannot be used
at all raises. Every kept sample satisfies onset <= apex (<= offset when the offset is known).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from merkit.data.annotations import (
    CellError,
    Row,
    as_frame,
    as_int,
    as_text,
    find_file,
    is_blank,
    is_plain_name,
)
from merkit.data.base import SampleSet, Skipped
from merkit.data.files import clip_frames, subdirs
from merkit.data.sample import APEX_ANNOTATED, APEX_MIDDLE, Sample
from merkit.data.taxonomy import Taxonomy
from merkit.errors import AnnotationError, DataLayoutError

_DIGIT_RUNS = re.compile(r"\d+")


@dataclass
class Collector:
    """Accumulates a loader's samples and its report (skipped items, notes)."""

    samples: list[Sample] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _seen: dict[str, str] = field(default_factory=dict)

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append(Skipped(item, reason))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def add(self, sample: Sample, where: str) -> None:
        """Keep `sample` unless its id was already seen (the first one wins, the rest reported)."""
        if sample.uid in self._seen:
            self.skip(sample.uid, f"{where}: duplicate of the sample on {self._seen[sample.uid]}")
            return
        self._seen[sample.uid] = where
        self.samples.append(sample)

    def result(self, name: str, root: Path, taxonomy: Taxonomy) -> SampleSet:
        return SampleSet(
            name=name,
            root=root,
            class_names=taxonomy.classes,
            taxonomy=taxonomy.name,
            samples=self.samples,
            skipped=self.skipped,
            notes=self.notes,
        )


@dataclass(frozen=True)
class ClipRow:
    """One annotation row after the loader has read its own column names."""

    row: Row
    dataset: str
    subject: str
    clip: str
    folder: Path | None  # None when the release's frames are not on disk (annotations only)
    emotion: object
    onset: object
    apex: object
    offset: object
    action_units: object = ""
    meta: dict[str, str] = field(default_factory=dict)


def _frame_cells(
    out: Collector, clip: ClipRow, uid: str
) -> tuple[int, int, int | None, str] | None:
    """(onset, apex, offset, apex source) of a row, consistent with each other; None if skipped.

    A blank or unreadable apex, or one outside onset..offset, becomes the middle frame (noted);
    an unreadable offset, or one before the onset, becomes unknown (noted).
    """
    where = clip.row.where
    onset, apex, offset = as_frame(clip.onset), as_frame(clip.apex), as_frame(clip.offset)
    if onset is None:
        out.skip(uid, f"{where}: onset {as_text(clip.onset)!r} is not a frame number (>= 0)")
        return None
    if offset is None and not is_blank(clip.offset):
        out.note(
            f"{where}: offset {as_text(clip.offset)!r} is not a frame number; treated as unknown"
        )
    if offset is not None and offset < onset:
        out.note(f"{where}: offset {offset} precedes onset {onset}; offset treated as unknown")
        offset = None
    if apex is not None and apex < onset:
        reason, apex = f"apex {apex} precedes onset {onset}", None
    elif apex is not None and offset is not None and apex > offset:
        reason, apex = f"apex {apex} follows offset {offset}", None
    else:
        reason = f"apex {as_text(clip.apex)!r} is not a frame number"
    if apex is not None:
        return onset, apex, offset, APEX_ANNOTATED
    if offset is None:
        out.skip(uid, f"{where}: {reason} and the offset is unknown, so it cannot be estimated")
        return None
    middle = (onset + offset) // 2
    out.note(f"{where}: {reason}; estimated as the middle frame {middle} of {onset}..{offset}")
    return onset, middle, offset, APEX_MIDDLE


def add_annotated_clip(out: Collector, taxonomy: Taxonomy, clip: ClipRow) -> None:
    """Turn one spreadsheet row into a Sample, or report why it was skipped.

    An unknown emotion raises LabelError (the file is wrong); everything else that stops a row
    from becoming a usable sample is reported in `out.skipped`, and estimates in `out.notes`.
    """
    where = clip.row.where
    uid = f"{clip.dataset}/{clip.subject}/{clip.clip}"
    for what, name in (("subject", clip.subject), ("filename", clip.clip)):
        if not is_plain_name(name):
            out.skip(uid, f"{where}: {what} {name!r} is not a folder name")
            return
    if is_blank(clip.emotion):
        out.skip(uid, f"{where}: the emotion cell is blank")
        return
    label = taxonomy.index_of(clip.emotion, where)
    if label is None:
        emotion = taxonomy.normalise(clip.emotion)
        out.skip(uid, f"{where}: emotion {emotion!r} is not in the {taxonomy.name} taxonomy")
        return
    cells = _frame_cells(out, clip, uid)
    if cells is None:
        return
    onset, apex, offset, apex_source = cells
    frames: tuple[Path, ...] = ()
    numbers: tuple[int, ...] = ()
    if clip.folder is not None:
        try:
            frames, numbers = clip_frames(clip.folder)
        except DataLayoutError as exc:
            out.skip(uid, f"{where}: {exc}")
            return
        absent = [f"{k} {n}" for k, n in (("onset", onset), ("apex", apex)) if n not in numbers]
        if absent:
            span = f"{numbers[0]}..{numbers[-1]}"
            out.skip(uid, f"{where}: {' and '.join(absent)} not among the frames ({span})")
            return
        if offset is not None and offset not in numbers:
            out.note(f"{where}: offset frame {offset} is not among the frames of {clip.folder}")
        last = numbers[-1] if offset is None else min(offset, numbers[-1])
        gaps = (last - onset + 1) - sum(1 for n in numbers if onset <= n <= last)
        if gaps:
            out.note(
                f"{where}: {gaps} frame(s) missing between {onset} and {last} in {clip.folder}"
            )
    sample = Sample(
        dataset=clip.dataset,
        subject=clip.subject,
        clip=clip.clip,
        path=clip.folder,
        emotion=taxonomy.normalise(clip.emotion),
        label=label,
        onset=onset,
        apex=apex,
        offset=offset,
        apex_source=apex_source,
        action_units=as_text(clip.action_units),
        frames=frames,
        frame_numbers=numbers,
        meta={"row": where, **clip.meta},
    )
    out.add(sample, where)


def add_rows(
    out: Collector, taxonomy: Taxonomy, rows: Iterable[Row], to_clip: Callable[[Row], ClipRow]
) -> None:
    """`add_annotated_clip` for every row; a row whose cells `to_clip` cannot read is skipped."""
    for row in rows:
        try:
            clip = to_clip(row)
        except CellError as exc:
            out.skip(row.where, str(exc))
            continue
        add_annotated_clip(out, taxonomy, clip)


def subject_id(value: object, template: str, where: str) -> str:
    """Canonical subject id from a cell holding a number or a prefixed id (6, "006", "sub06").

    CellError when the cell holds no number, several ("1.5") or a negative one.
    """
    text = as_text(value)
    runs = _DIGIT_RUNS.findall(text)
    number = as_int(value)
    if len(runs) != 1 or (number is not None and number < 0):
        raise CellError(f"{where}: subject {text!r} is not one subject number")
    return template.format(int(runs[0]))


def find_dir_holding(root: Path, pattern: str, depth: int = 3) -> Path | None:
    """The shallowest folder at or under `root` with a sub-folder matching glob `pattern`.

    Releases are unpacked with one or two extra wrapper folders, so loaders look a few levels
    down instead of insisting on one exact nesting.
    """
    level, seen = [root], set()
    for _ in range(depth + 1):
        for folder in level:
            if any(p.is_dir() for p in folder.glob(pattern)):
                return folder
        seen.update(folder.resolve() for folder in level)  # a symlink loop is entered once
        level = [
            c for folder in level for c in _readable_subdirs(folder) if c.resolve() not in seen
        ]
    return None


def _readable_subdirs(folder: Path) -> list[Path]:
    """Sub-folders, or none where the folder cannot be listed (a `lost+found` beside the
    release cannot hold it, so it must not stop the search)."""
    try:
        return list(subdirs(folder))
    except DataLayoutError:
        return []


def annotation_file(root: Path, option: str | Path | None, pattern: str, what: str) -> Path:
    """The annotation file: the `annotations=` option if given, else the match in `root`."""
    if option is not None:
        path = Path(option)
        if not path.is_file():
            raise AnnotationError(f"{path}: {what} given with annotations= does not exist")
        return path
    return find_file(root, pattern, what)
