"""Hard clips for apex spotting, in named groups, on drawn faces or on face photographs.

Each group stresses one thing a spotter meets in real recordings (every duration is drawn in
milliseconds and turned into frames at the group's rate):

- mouth, brow: a movement of the lips or brows, mild drift and noise (the plain case);
- eyelid: the upper-lid raiser (AU5) or the lid tightener (AU7), on one side or both;
- blink: any movement with one or two blinks of 100-400 ms near it (never on its apex);
- drift: 150-395 frames at 200 fps while the head drifts 3-8 px, turns and nears the camera;
- long30: a 21-30 frame movement (0.7-1 s) at 30 fps;
- low: any movement of only 0.5-1 px;
- jpeg: heavy JPEG compression (quality 30-60) and more sensor noise;
- filling: the face upscaled to fill a 640x480 frame (for spotting without `--aligned`).

A blink of 100-400 ms is also placed in 40 % of the clips of every other group, away from the
apex. `draw_spec` draws one clip's `ClipSpec`; `render_drawn` renders it on a drawn subject
(`merkit.synthetic.clips`), `merkit.synthetic.photo.render_photo_clip` on a photograph;
`write_clip_set` writes clips in CASME II's layout with their truth, so `merkit spot casme2`
scores them (`--fps 30` for a 30 fps group).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from merkit.io import write_text_atomic
from merkit.synthetic.clips import render_clip
from merkit.synthetic.dataset import TRUTH_NAME, write_frames, write_sheet
from merkit.synthetic.population import REFERENCE_SIZE, SyntheticConfig
from merkit.synthetic.spec import FALLS, RISES, ClipSpec, fill_frames

MOUTH = ("12", "L12", "R12", "15", "20", "14", "10", "17", "9", "6+12", "24")
BROW = ("1", "2", "1+2", "4", "L2", "R2", "1+4")
EYELID = ("5", "7", "L7", "R7", "L5", "R5")
ANY = MOUTH + BROW + EYELID
GROUPS = ("mouth", "brow", "eyelid", "blink", "drift", "long30", "low", "jpeg", "filling")
FILL_SIZE = (640, 480)
STRAY_BLINK_SHARE = 0.4
APEX_CLEAR_MS = 40  # no blink within this of the apex


def _frames(ms: float, fps: float) -> int:
    return max(1, round(ms * fps / 1000))


def _blink(rng: np.random.Generator, fps: float, start: float) -> tuple[float, float, float]:
    """A blink starting at frame `start`: 100-400 ms, the lids 70-100 % shut."""
    return (start, _frames(rng.uniform(100, 400), fps), float(rng.uniform(0.7, 1.0)))


def _clear_of_apex(blink: tuple[float, float, float], apex: int, fps: float, n: int) -> bool:
    start, duration, _ = blink
    margin = _frames(APEX_CLEAR_MS, fps)
    return (
        start >= 0
        and start + duration < n
        and not (start - margin <= apex <= start + duration + margin)
    )


def _place_blinks(
    rng: np.random.Generator, spec: ClipSpec, count: int, near: bool
) -> tuple[tuple[float, float, float], ...]:
    """`count` blinks clear of the apex: near the movement (from 400 ms before its onset to
    200 ms after its offset), or anywhere in the clip."""
    low, high = 0, spec.n_frames - 1
    if near:
        low = max(0, spec.onset - _frames(400, spec.fps))
        high = min(spec.n_frames - 1, spec.offset + _frames(200, spec.fps))
    placed: list[tuple[float, float, float]] = []
    for _ in range(50):
        if len(placed) == count:
            break
        blink = _blink(rng, spec.fps, float(rng.integers(low, high + 1)))
        overlaps = any(abs(blink[0] - other[0]) < other[1] + blink[1] for other in placed)
        if _clear_of_apex(blink, spec.apex, spec.fps, spec.n_frames) and not overlaps:
            placed.append(blink)
    return tuple(placed)


def draw_spec(group: str, rng: np.random.Generator) -> ClipSpec:
    """One clip of `group` (see the module docstring); pixel sizes are at a 224 px face."""
    fps = 30.0 if group == "long30" else 200.0
    if group == "long30":
        episode = int(rng.integers(21, 31))
        before, after = (int(rng.integers(3, 41)) for _ in range(2))
    else:
        episode = _frames(rng.uniform(200, 500), fps)
        before, after = (_frames(rng.uniform(50, 400), fps) for _ in range(2))
    n_frames = episode + before + after
    if group == "drift":
        n_frames = int(rng.integers(max(150, n_frames), 396))
        before = int(rng.integers(10, n_frames - episode - 10))
    n_frames = max(n_frames, 36)
    onset, offset = before, before + episode - 1
    apex = onset + max(1, round(rng.uniform(0.25, 0.6) * (episode - 1)))
    units = {"mouth": MOUTH, "brow": BROW, "eyelid": EYELID}.get(group, ANY)
    spec = ClipSpec(
        group=group,
        fps=fps,
        n_frames=n_frames,
        onset=onset,
        apex=apex,
        offset=offset,
        codes=str(rng.choice(units)),
        amplitude=float(rng.uniform(0.5, 1.0) if group == "low" else rng.uniform(1.0, 2.5)),
        rise=str(rng.choice(list(RISES))),
        fall=str(rng.choice(list(FALLS))),
        drift_px=float(rng.uniform(3, 8) if group == "drift" else rng.uniform(0.3, 1.5)),
        drift_deg=float(rng.uniform(0.5, 2) if group == "drift" else rng.uniform(0, 0.5)),
        drift_scale=float(rng.uniform(0.01, 0.03) if group == "drift" else 0.0),
        noise_std=float(rng.uniform(2, 4) if group == "jpeg" else rng.uniform(1, 2.5)),
        light=float(rng.uniform(0, 0.03)),
        jpeg_quality=int(rng.integers(30, 61) if group == "jpeg" else rng.integers(80, 96)),
        fill=FILL_SIZE if group == "filling" else None,
    )
    if group == "blink":
        blinks = _place_blinks(rng, spec, int(rng.integers(1, 3)), near=True)
    elif rng.random() < STRAY_BLINK_SHARE:
        blinks = _place_blinks(rng, spec, 1, near=False)
    else:
        blinks = ()
    return dataclasses.replace(spec, blinks=blinks)


def render_drawn(spec: ClipSpec, subject: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """`spec` on drawn subject `subject` (faces of `size` px), frames (T, H, W) uint8. The drawn
    generator's own nuisances follow the spec: its drift, noise and light; its movement rises
    and falls as a raised cosine, whatever the spec's shape."""
    scale = REFERENCE_SIZE / size  # the config states pixels at a 128 px face
    config = SyntheticConfig(
        size=size,
        fps=spec.fps,
        amplitude_px=(spec.amplitude * scale, spec.amplitude * scale),
        drift_px=spec.drift_px * scale,
        drift_deg=spec.drift_deg,
        noise_std=spec.noise_std,
        illumination=spec.light,
        blink_rate=0.0,
        tic_amplitude=0.0,
        seed=seed,
    )
    frames, _ = render_clip(
        None if spec.units else "others",
        subject,
        0,
        config,
        n_frames=spec.n_frames,
        onset=spec.onset,
        apex=spec.apex,
        offset=spec.offset,
        action_units=spec.codes,
        blinks=spec.blinks,
    )
    return frames


def finish(spec: ClipSpec, frames: np.ndarray) -> np.ndarray:
    """The frames as the camera delivers them: upscaled to fill the frame if the spec says so."""
    return fill_frames(frames, spec.fill) if spec.fill else frames


def write_clip_set(
    root: str | Path, clips: Iterable[tuple[ClipSpec, str, np.ndarray]], first: int = 1
) -> Path:
    """Write (spec, face name, frames) clips in CASME II's layout under `root`, one subject per
    group: `Cropped/.../reg_img*.jpg` for face crops, `CASME2_RAW_selected/.../img*.jpg` for
    frames that need face detection (only one of the two: the loader reads one release), the
    coding sheet with the true onset, apex and offset, and `synthetic-truth.csv` with each
    clip's group, face, rate and nuisances."""
    root = Path(root)
    rows, truths = [], []
    for number, (spec, face, frames) in enumerate(clips, start=1):
        release, prefix = ("CASME2_RAW_selected", "img") if spec.fill else ("Cropped", "reg_img")
        subject, name = f"sub{1 + number // 1000:02d}", f"EP{number:03d}"
        write_frames(root / release / subject / name, frames, first, spec.jpeg_quality, prefix)
        rows.append(
            {
                "Subject": int(subject[3:]),
                "Filename": name,
                "OnsetFrame": first + spec.onset,
                "ApexFrame": first + spec.apex,
                "OffsetFrame": first + spec.offset,
                "Action Units": spec.codes,
                "Estimated Emotion": "others",
            }
        )
        truth = dataclasses.asdict(spec)
        truth.update(subject=subject, filename=name, face=face, first_frame=first)
        truth["blinks"] = ";".join(f"{s:.0f}+{d:.0f}" for s, d, _ in spec.blinks)
        truths.append(truth)
    write_sheet(root / "CASME2-coding-hard.xlsx", rows)
    write_text_atomic(root / TRUTH_NAME, pd.DataFrame(truths).to_csv(index=False))
    return root
