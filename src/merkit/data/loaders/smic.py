"""SMIC (Li et al., 2013): no spreadsheet, the class is the folder; HS 100 fps, VIS/NIR 25 fps.

Subjects and clips are named the MEGC way (folder `s1`, clip `s1_ne_01` -> subject `s01`, clip
`s01_ne_01`), so SMIC-HS samples carry the same ids as in the MEGC2019 composite and its
ground-truth file; the folder's own name is kept in `meta["folder"]`.
"""

from __future__ import annotations

import re
from pathlib import Path

from merkit.data.base import SampleSet
from merkit.data.files import clip_frames, subdirs
from merkit.data.loaders._common import Collector
from merkit.data.registry import register_dataset
from merkit.data.sample import APEX_MIDDLE, Sample
from merkit.data.taxonomy import get_taxonomy
from merkit.errors import ConfigError, DataLayoutError

FPS = {"hs": 100, "vis": 25, "nir": 25}
TAXONOMIES = ("all", "3class")
LAYOUT = "SMIC_all_cropped/{}/s1/micro/{{negative,positive,surprise}}/s1_ne_01/reg_image*.bmp"
_SUBJECT = re.compile(r"^s(\d+)$", re.IGNORECASE)
_CLIP = re.compile(r"^s(\d+)(_.*)$", re.IGNORECASE)


def megc_clip(name: str) -> str:
    """MEGC spelling of a clip folder name: s1_ne_01 -> s01_ne_01."""
    match = _CLIP.match(name)
    return f"s{int(match.group(1)):02d}{match.group(2)}" if match else name


def variant_root(root: Path, variant: str) -> Path:
    """The HS/VIS/NIR folder: `root` itself, or found one or two levels below it."""
    name = variant.upper()
    if root.name.upper() == name:
        return root
    for candidate in (root / name, *(d / name for d in subdirs(root))):
        if candidate.is_dir():
            return candidate
    raise DataLayoutError(
        f"{root}: no {name}/ folder (expected {root}/{name} or {root}/SMIC_all_cropped/{name})"
    )


def _load(root: Path, taxonomy: str, variant: str) -> SampleSet:
    if variant not in FPS:
        raise ConfigError(f"SMIC variant={variant!r}: choose one of {', '.join(FPS)}")
    tax = get_taxonomy("smic", taxonomy)
    dataset = f"smic-{variant}"
    base = variant_root(Path(root), variant)
    out = Collector()
    out.note("SMIC has no apex annotation: apex is the middle frame of each clip")
    subjects = [d for d in subdirs(base) if _SUBJECT.match(d.name)]
    if not subjects:
        raise DataLayoutError(f"{base}: no subject folders (s1, s2, ...) found")
    for subject_dir in subjects:
        subject = f"s{int(_SUBJECT.match(subject_dir.name).group(1)):02d}"
        non_micro = subject_dir / "non_micro"
        if non_micro.is_dir():
            count = len(list(subdirs(non_micro)))
            out.skip(f"{dataset}/{subject}/non_micro", f"{count} non-micro clip(s) are not used")
        micro = subject_dir / "micro"
        if not micro.is_dir():
            out.skip(f"{dataset}/{subject}", f"{micro} does not exist")
            continue
        for emotion_dir in subdirs(micro):
            label = tax.index_of(emotion_dir.name, str(emotion_dir))
            for clip_dir in subdirs(emotion_dir):
                clip = megc_clip(clip_dir.name)
                uid = f"{dataset}/{subject}/{clip}"
                if label is None:
                    out.skip(uid, f"emotion {emotion_dir.name!r} is not in the {tax.name} taxonomy")
                    continue
                try:
                    frames, numbers = clip_frames(clip_dir)
                except DataLayoutError as exc:
                    out.skip(uid, str(exc))
                    continue
                sample = Sample(
                    dataset=dataset,
                    subject=subject,
                    clip=clip,
                    path=clip_dir,
                    emotion=tax.normalise(emotion_dir.name),
                    label=label,
                    onset=numbers[0],
                    apex=numbers[len(numbers) // 2],
                    offset=numbers[-1],
                    apex_source=APEX_MIDDLE,
                    frames=frames,
                    frame_numbers=numbers,
                    meta={"fps": str(FPS[variant]), "folder": clip_dir.name, "variant": variant},
                )
                out.add(sample, str(clip_dir))
    return out.result(dataset, Path(root), tax)


@register_dataset(
    "smic",
    title="SMIC (variant=hs|vis|nir, default hs)",
    layout=LAYOUT.format("{HS,VIS,NIR}"),
    taxonomies=TAXONOMIES,
)
def load_smic(root: Path, taxonomy: str = "3class", *, variant: str = "hs") -> SampleSet:
    """Load one SMIC sub-set; `variant` is "hs" (high-speed), "vis" or "nir"."""
    return _load(root, taxonomy, variant.lower())


def _register_variant(variant: str) -> None:
    """`smic-hs`, `smic-vis`, `smic-nir`: the same loader with the variant fixed, for the CLI."""

    def load(root: Path, taxonomy: str = "3class") -> SampleSet:
        return _load(root, taxonomy, variant)

    load.__doc__ = f"Load SMIC-{variant.upper()} ({FPS[variant]} fps)."
    register_dataset(
        f"smic-{variant}",
        title=f"SMIC-{variant.upper()} ({FPS[variant]} fps)",
        layout=LAYOUT.format(variant.upper()),
        taxonomies=TAXONOMIES,
    )(load)


for _variant in FPS:
    _register_variant(_variant)
