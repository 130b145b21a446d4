"""What every loader does the same way: collect samples, skips and notes; check a clip's frames.

A loader reads its own annotation format and then hands each row here, so the rules (dropped
emotions are reported, a missing apex is estimated and logged, onset/apex must exist among the
frames, duplicate ids are reported) are written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from merkit.data.annotations import Row, as_int, as_text, find_file, list_frames, subdirs
from merkit.data.base import SampleSet, Skipped
from merkit.data.sample import APEX_ANNOTATED, APEX_MIDDLE, Sample
from merkit.data.taxonomy import Taxonomy
from merkit.errors import AnnotationError, DataLayoutError


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


def clip_frames(folder: Path) -> tuple[tuple[Path, ...], tuple[int, ...]]:
    """Frames of a clip folder; DataLayoutError when the folder is missing or holds no frame."""
    if not folder.is_dir():
        raise DataLayoutError(f"frame folder {folder} does not exist")
    frames, numbers = list_frames(folder)
    if not frames:
        raise DataLayoutError(f"frame folder {folder} holds no numbered image")
    return frames, numbers


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


def add_annotated_clip(out: Collector, taxonomy: Taxonomy, clip: ClipRow) -> None:
    """Turn one spreadsheet row into a Sample, or report why it was skipped.

    An unknown emotion raises LabelError (the file is wrong); everything else that stops a row
    from becoming a usable sample is reported in `out.skipped`, and estimates in `out.notes`.
    """
    where = clip.row.where
    uid = f"{clip.dataset}/{clip.subject}/{clip.clip}"
    label = taxonomy.index_of(clip.emotion, where)
    if label is None:
        emotion = taxonomy.normalise(clip.emotion)
        out.skip(uid, f"{where}: emotion {emotion!r} is not in the {taxonomy.name} taxonomy")
        return
    onset, offset = as_int(clip.onset), as_int(clip.offset)
    if onset is None:
        out.skip(uid, f"{where}: onset {as_text(clip.onset)!r} is not a frame number")
        return
    if offset is not None and offset < onset:
        out.note(f"{where}: offset {offset} precedes onset {onset}; offset treated as unknown")
        offset = None
    apex, apex_source = as_int(clip.apex), APEX_ANNOTATED
    if apex is None:
        if offset is None:
            out.skip(uid, f"{where}: neither apex nor offset is a frame number")
            return
        apex, apex_source = (onset + offset) // 2, APEX_MIDDLE
        out.note(
            f"{where}: apex {as_text(clip.apex)!r} is not a frame number; "
            f"estimated as the middle frame {apex} of {onset}..{offset}"
        )
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


def subject_id(value: object, template: str, where: str) -> str:
    """Canonical subject id from a cell holding a number or a prefixed id (6, "006", "sub06")."""
    digits = "".join(ch for ch in as_text(value) if ch.isdigit())
    if not digits:
        raise AnnotationError(f"{where}: subject {as_text(value)!r} holds no subject number")
    return template.format(int(digits))


def find_dir_holding(root: Path, pattern: str, depth: int = 3) -> Path | None:
    """The shallowest folder at or under `root` with a sub-folder matching glob `pattern`.

    Releases are unpacked with one or two extra wrapper folders, so loaders look a few levels
    down instead of insisting on one exact nesting.
    """
    level = [root]
    for _ in range(depth + 1):
        for folder in level:
            if any(p.is_dir() for p in folder.glob(pattern)):
                return folder
        level = [c for folder in level for c in subdirs(folder)]
    return None


def annotation_file(root: Path, option: str | Path | None, pattern: str, what: str) -> Path:
    """The annotation file: the `annotations=` option if given, else the match in `root`."""
    if option is not None:
        path = Path(option)
        if not path.is_file():
            raise AnnotationError(f"{path}: {what} given with annotations= does not exist")
        return path
    return find_file(root, pattern, what)
