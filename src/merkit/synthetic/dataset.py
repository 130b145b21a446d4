"""A synthetic dataset written in the real CASME II cropped layout, and synthetic videos.

`merkit demo` and the tests of every later stage need data that anyone can make in seconds: the
clips of `merkit.synthetic.clips`, written as the real release lays them out (coding sheet,
`Cropped/sub01/EP03_01/reg_img46.jpg` frames numbered from an arbitrary offset, a few "/" apex
cells) so the real loader reads them back, or as one video holding a micro-expression among
neutral frames for `merkit predict`. The same config writes the same bytes.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import pandas as pd

from merkit.data.sample import APEX_ANNOTATED, Sample
from merkit.errors import ConfigError, DataLayoutError
from merkit.io import write_atomic, write_bytes_atomic, write_text_atomic
from merkit.synthetic.clips import render_clip
from merkit.synthetic.population import SyntheticConfig, make_subject, random_stream

SHEET_NAME = "CASME2-coding-synthetic.xlsx"
CONFIG_NAME = "synthetic-config.json"
TRUTH_NAME = "synthetic-truth.csv"
FRAMES_DIR = "Cropped"
# Header as the real sheet reads back with pandas: two unnamed (empty-header) columns.
COLUMNS = (
    "Subject",
    "Filename",
    "Unnamed: 2",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Unnamed: 6",
    "Action Units",
    "Estimated Emotion",
)


def write_video(path: str | Path, frames: np.ndarray, fps: float, crf: int = 10) -> Path:
    """Write grey (T, H, W) or colour (T, H, W, 3) uint8 frames as an H.264 file.

    A low `crf` keeps the sub-pixel motion that a coarser encoding would wipe out; one encoder
    thread keeps the output bytes reproducible.
    """
    import av  # imported here: only video writing needs it

    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or len(frames) == 0:
        raise ConfigError(f"{path}: frames must be a non-empty uint8 (T, H, W[, 3]) array")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ConfigError(f"{path}: H.264 needs an even frame size, got {width}x{height}")

    def encode(handle: IO[bytes]) -> None:
        with av.open(handle, "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "medium"}
            stream.codec_context.thread_count = 1
            fmt = "gray" if frames.ndim == 3 else "rgb24"
            for image in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format=fmt)))
            container.mux(stream.encode())

    return write_atomic(path, encode, binary=True)


def plan_emotions(config: SyntheticConfig) -> list[str]:
    """Balanced class counts over the whole set, shuffled across subjects."""
    total = config.n_subjects * config.clips_per_subject
    words = [config.classes[i % len(config.classes)] for i in range(total)]
    order = random_stream(config.seed, 3).permutation(total)
    return [words[i] for i in order]


def _clip_names(rng: np.random.Generator, n_clips: int) -> list[str]:
    """CASME II names: EP{episode}_{index}, the index counting clips of the same episode."""
    seen: Counter[int] = Counter()
    names = []
    for episode in rng.integers(1, 20, size=n_clips):
        seen[int(episode)] += 1
        names.append(f"EP{episode:02d}_{seen[int(episode)]:02d}")
    return names


def write_frames(
    folder: Path, frames: np.ndarray, first: int, quality: int, prefix: str = "reg_img"
) -> None:
    """JPEG frames `{prefix}{number}.jpg` numbered from `first` into a new `folder`."""
    folder.mkdir(parents=True)
    for i, image in enumerate(frames):
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise DataLayoutError(f"{folder}: could not encode frame {first + i} as JPEG")
        (folder / f"{prefix}{first + i}.jpg").write_bytes(data.tobytes())


def write_sheet(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the coding sheet the way the real one reads back: two empty-header columns."""
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    header = ["" if c.startswith("Unnamed") else c for c in COLUMNS]
    sheet = io.BytesIO()
    table.to_excel(sheet, index=False, header=header, engine="openpyxl")
    write_bytes_atomic(path, _pinned_timestamps(sheet.getvalue()))


def _pinned_timestamps(xlsx: bytes) -> bytes:
    """Pin the save time openpyxl writes into the xlsx, so a seed gives the same bytes."""
    with zipfile.ZipFile(io.BytesIO(xlsx)) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    stamp = rb"\g<1>2014-05-08T00:00:00Z\g<2>"
    pinned = io.BytesIO()
    with zipfile.ZipFile(pinned, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            if name == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)", stamp, data)
            archive.writestr(zipfile.ZipInfo(name, date_time=(2014, 5, 8, 0, 0, 0)), data)
    return pinned.getvalue()


def _sheet_au(codes: str) -> str | int:
    """The real sheet stores a single numeric unit ("12") as a number: keep that quirk."""
    return int(codes) if codes.isdigit() else codes


def _render_dataset(
    folder: Path, config: SyntheticConfig, progress: Callable[[int, int], None] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Render every clip's frames under `folder`; return the sheet rows and the truth rows."""
    emotions = iter(plan_emotions(config))
    rows, truths = [], []
    total = config.n_subjects * config.clips_per_subject
    for number in range(1, config.n_subjects + 1):
        subject = make_subject(number, config)
        layout_rng = random_stream(config.seed, 4, number)
        for clip, name in enumerate(_clip_names(layout_rng, config.clips_per_subject)):
            frames, truth = render_clip(next(emotions), subject, clip, config)
            first = int(layout_rng.integers(10, 400))
            write_frames(folder / f"sub{number:02d}" / name, frames, first, config.jpeg_quality)
            rows.append(
                {
                    "Subject": number,
                    "Filename": name,
                    "OnsetFrame": first + truth["onset"],
                    "ApexFrame": first + truth["apex"],
                    "OffsetFrame": first + truth["offset"],
                    "Action Units": _sheet_au(truth["action_units"]),
                    "Estimated Emotion": truth["emotion"],
                }
            )
            hidden = {k: v for k, v in truth.items() if k not in ("subject", "clip")}
            truths.append({"subject": f"sub{number:02d}", "filename": name, "first_frame": first})
            truths[-1].update(hidden)
            truths[-1]["tic_apex"] = "" if truth["tic_apex"] is None else truth["tic_apex"]
            if progress is not None:
                progress(len(rows), total)
    # The real sheet leaves a few apex cells as "/": downstream must estimate those.
    quirk_rng = random_stream(config.seed, 5)
    for i in quirk_rng.choice(len(rows), size=min(config.missing_apex, len(rows)), replace=False):
        rows[int(i)]["ApexFrame"] = "/"
    return rows, truths


def generate_casme2_like(
    root: str | Path,
    config: SyntheticConfig | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a synthetic dataset in the CASME II cropped layout under `root`; return `root`.

    Layout: `CASME2-coding-synthetic.xlsx` (the real sheet's columns, a few "/" apex cells) and
    `Cropped/sub01/EP03_01/reg_img46.jpg`, frame numbers starting at an arbitrary offset as in
    the real release. `synthetic-truth.csv` keeps what the sheet hides (true apex, amplitude,
    blinks) and `synthetic-config.json` the config, written last: a root that already holds the
    same config is returned as is (a cache), anything else there is an error unless `overwrite`.
    `progress(done, total)` is called after each clip.
    """
    config = config or SyntheticConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    config_path, frames_dir, sheet = root / CONFIG_NAME, root / FRAMES_DIR, root / SHEET_NAME
    if not overwrite:
        if config_path.exists() and config_path.read_text() == config.to_json():
            return root
        if config_path.exists() or frames_dir.exists() or sheet.exists():
            raise DataLayoutError(
                f"{root} already holds a different or unfinished dataset; choose an empty folder "
                "or overwrite it"
            )

    partial = root / f".{FRAMES_DIR}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    rows, truths = _render_dataset(partial, config, progress)
    config_path.unlink(missing_ok=True)  # from here on the root is unfinished until rewritten
    shutil.rmtree(frames_dir, ignore_errors=True)
    os.replace(partial, frames_dir)
    write_text_atomic(root / TRUTH_NAME, pd.DataFrame(truths).to_csv(index=False))
    write_sheet(sheet, rows)
    write_text_atomic(config_path, config.to_json())
    return root


def with_true_apex(samples: Sequence[Sample], root: str | Path) -> list[Sample]:
    """`samples` of the synthetic dataset at `root`, each with the apex the generator drew (the
    sheet writes a few as "/", like the real one) marked as annotated: the truth to score
    spotting against."""
    truth = pd.read_csv(Path(root) / TRUTH_NAME)
    apex = {
        (row.subject, row.filename): int(row.first_frame + row.apex)
        for row in truth.itertuples()
        if not pd.isna(row.apex)
    }
    return [
        replace(s, apex=apex[(s.subject, s.clip)], apex_source=APEX_ANNOTATED)
        for s in samples
        if (s.subject, s.clip) in apex
    ]


def write_synthetic_video(
    path: str | Path,
    emotion: str | None = "happiness",
    *,
    subject: int = 0,
    n_frames: int = 200,
    onset: int = 80,
    apex: int | None = None,
    offset: int | None = None,
    config: SyntheticConfig | None = None,
) -> dict[str, Any]:
    """Render a long clip with one micro-expression inside neutral frames and write it as video.

    For `merkit predict` tests: the returned truth holds the 0-based onset/apex/offset frame
    indices (apex and offset default to 15 and 40 frames after onset, 75 and 200 ms at 200 fps).
    """
    config = config or SyntheticConfig()
    apex = onset + 15 if apex is None else apex
    offset = onset + 40 if offset is None else offset
    frames, truth = render_clip(
        emotion, subject, 0, config, n_frames=n_frames, onset=onset, apex=apex, offset=offset
    )
    truth["path"] = str(write_video(path, frames, config.fps))
    return truth
