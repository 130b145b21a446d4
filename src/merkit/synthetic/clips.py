"""One synthetic micro-expression clip: a procedural face moved by action units.

Procedural faces (`merkit.synthetic.faces`) whose action units move by a few pixels at most, through
smooth local warps with an onset -> apex -> offset profile. The emotion is defined by which
action units move, as in the CASME II coding, so the 5-class and 3-class taxonomies apply. Head
drift, blinks, sensor noise, illumination change, timing and amplitude jitter and per-subject
habits keep the task from being trivial.

Everything is drawn from `numpy.random.SeedSequence` streams keyed by (seed, subject, clip)
(`random_stream`), so a clip does not depend on which other clips were generated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from merkit.errors import ConfigError
from merkit.synthetic.faces import SIDES, face_points68
from merkit.synthetic.population import (
    AU_GAIN,
    AU_MOTIONS,
    EMOTION_AUS,
    SyntheticConfig,
    SyntheticSubject,
    make_subject,
    parse_au,
    random_stream,
)
from merkit.synthetic.truth import ClipMotion, rigid_source

Motion = tuple[np.ndarray, np.ndarray]  # temporal profile (T,), displacement field (2, H, W)


def displacement_field(
    code: str,
    anchors: dict[str, np.ndarray],
    amplitude: float,
    grid: tuple[np.ndarray, np.ndarray],
    expressiveness: float = 1.0,
    asymmetry: float = 0.0,
) -> np.ndarray:
    """(2, H, W) displacement in pixels of action unit `code` at its apex, placed at `anchors`
    (a drawn subject's, or points found on a photograph: `merkit.synthetic.photo`)."""
    unit, only_side = parse_au(code)
    x, y = grid
    size = x.shape[0]
    field_ = np.zeros((2, *x.shape), np.float32)
    gain = amplitude * AU_GAIN.get(unit, 1.0) * expressiveness
    for blob in AU_MOTIONS[unit]:
        sided = f"{blob.anchor}_L" in anchors
        sides = [s for s in SIDES if only_side in (None, s)] if sided else [None]
        for side in sides:
            sign = SIDES[side] if side else 0.0
            cx, cy = anchors[f"{blob.anchor}_{side}" if side else blob.anchor]
            sx, sy = blob.sigma[0] * size, blob.sigma[1] * size
            window = np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))
            side_gain = gain * (1.0 + sign * asymmetry)
            field_[0] += side_gain * sign * blob.vector[0] * window
            field_[1] += side_gain * blob.vector[1] * window
    return field_


def subject_field(
    code: str, subject: SyntheticSubject, amplitude: float, grid: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """`displacement_field` of a drawn subject, with its expressiveness and asymmetry."""
    return displacement_field(
        code, subject.anchors, amplitude, grid, subject.expressiveness, subject.asymmetry
    )


def temporal_profile(n_frames: int, onset: int, apex: int, offset: int) -> np.ndarray:
    """Raised-cosine rise onset -> apex and fall apex -> offset; 0 outside, 1 at the apex."""
    t = np.arange(n_frames, dtype=np.float32)
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - onset) / max(apex - onset, 1), 0, 1))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.clip((t - apex) / max(offset - apex, 1), 0, 1))
    return np.where(t <= apex, rise, fall).astype(np.float32)


Blink = tuple[float, float, float]  # start frame, duration in frames, depth (1 = lids shut)


def blink_closure(n_frames: int, blink: Blink) -> np.ndarray:
    """(T,) lid closure of one placed blink: the lid falls in the first third of its duration
    and rises, slower, in the rest, as a real blink does (about 100 then 200 ms)."""
    start, duration, depth = blink
    phase = np.clip((np.arange(n_frames, dtype=np.float32) - start) / duration, 0.0, 1.0)
    closing = np.sin(0.5 * np.pi * np.clip(phase / 0.35, 0.0, 1.0)) ** 2
    opening = np.cos(0.5 * np.pi * np.clip((phase - 0.35) / 0.65, 0.0, 1.0)) ** 2
    return (depth * np.where(phase <= 0.35, closing, opening) * (phase < 1)).astype(np.float32)


def _blink_alpha(
    n_frames: int, rng: np.random.Generator, rate: float, placed: Sequence[Blink] = ()
) -> tuple[np.ndarray, list]:
    """Per-frame lid closure (0 open .. 1 shut) of the blinks that fall in the clip: drawn at
    `rate` per 100 frames, and those `placed`."""
    alpha = np.zeros(n_frames, np.float32)
    blinks = []
    t = np.arange(n_frames, dtype=np.float32)
    for _ in range(rng.poisson(rate * n_frames / 100.0)):
        duration = float(rng.uniform(8, 24))
        start = float(rng.uniform(-duration / 2, n_frames - duration / 2))
        depth = float(rng.uniform(0.5, 1.0))
        phase = np.clip((t - start) / duration, 0.0, 1.0)
        alpha = np.maximum(alpha, depth * np.sin(np.pi * phase) ** 2)
        blinks.append((int(max(start, 0)), int(min(start + duration, n_frames - 1))))
    for blink in placed:
        alpha = np.maximum(alpha, blink_closure(n_frames, blink))
        start, duration, _ = blink
        blinks.append((int(max(start, 0)), int(min(start + duration, n_frames - 1))))
    return alpha, blinks


def _blink_frame(
    subject: SyntheticSubject, closure: float, grid: tuple[np.ndarray, ...]
) -> np.ndarray:
    """The neutral face with both upper lids lowered by `closure` (a sweep, not a fade)."""
    if closure <= 0.0:
        return subject.neutral
    x, y = grid
    size = subject.neutral.shape[0]
    mask = np.zeros_like(subject.neutral)
    for side in SIDES:
        ex, ey = subject.anchors[f"eye_{side}"]
        ew, eh = 1.3 * subject.face.eye_w * size, 1.8 * subject.face.eye_h * size
        around_eye = np.clip(2.0 * (1.0 - np.hypot((x - ex) / ew, (y - ey) / eh)), 0.0, 1.0)
        lid = ey - eh + 2.0 * eh * closure
        mask = np.maximum(mask, around_eye * np.clip(lid - y + 0.5, 0.0, 1.0))
    return subject.neutral * (1.0 - mask) + subject.closed * mask


def _unit_motions(
    rng: np.random.Generator,
    codes: list[str],
    person: SyntheticSubject,
    amplitude: float,
    timing: tuple[int, int, int, int],
    grid: tuple[np.ndarray, np.ndarray],
) -> list[Motion]:
    """The clip's action units; each peaks a frame or two from the others, with its own gain."""
    n_frames, onset, apex, offset = timing
    motions = []
    for code in codes:
        peak = int(np.clip(apex + rng.integers(-2, 3), onset + 1, offset - 1))
        strength = amplitude * float(rng.uniform(0.85, 1.15))
        field_ = subject_field(code, person, strength, grid)
        motions.append((temporal_profile(n_frames, onset, peak, offset), field_))
    return motions


def _tic_motion(
    rng: np.random.Generator,
    person: SyntheticSubject,
    amplitude: float,
    n_frames: int,
    grid: tuple[np.ndarray, np.ndarray],
) -> list[Motion]:
    """Now and then the subject's habitual twitch, at any time, whatever the emotion."""
    if rng.random() >= person.tic_prob or amplitude <= 0:
        return []
    t0 = int(rng.integers(0, n_frames - 6))
    t1 = int(min(n_frames - 1, t0 + rng.integers(6, 16)))
    profile = temporal_profile(n_frames, t0, (t0 + t1) // 2, t1)
    return [(profile, subject_field(person.tic, person, amplitude, grid))]


def _head_drift(
    rng: np.random.Generator, n_frames: int, config: SyntheticConfig, drift_gain: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rigid pose per frame: translation (T, 2) in pixels and rotation (T,) in radians.

    A smooth ramp to a random end pose plus a slight wobble, at most `drift_px` from the first
    frame's pose.
    """
    ramp = np.linspace(0.0, 1.0, n_frames) ** rng.uniform(0.7, 1.5)
    wobble = np.sin(np.linspace(0, np.pi * rng.uniform(1, 4), n_frames) + rng.uniform(0, 6.3))
    reach = config.drift_px * config.scale * np.array([rng.uniform(0.3, 0.9) * drift_gain, 0.05])
    heading = rng.uniform(0, 2 * np.pi, size=2)
    directions = np.stack([np.cos(heading), np.sin(heading)], axis=1) * reach[:, None]
    shift = ramp[:, None] * directions[0] + (wobble - wobble[0])[:, None] * directions[1]
    angle = np.deg2rad(ramp * rng.uniform(-1, 1) * config.drift_deg)
    return shift.astype(np.float32), angle.astype(np.float32)


def _displacement(motions: list[Motion], n_frames: int, shape: tuple[int, int]) -> np.ndarray:
    """(T, 2, H, W) skin displacement of every frame: the motions' fields times their profiles."""
    if not motions:
        return np.zeros((n_frames, 2, *shape), np.float32)
    profiles = np.stack([p for p, _ in motions])  # (K, T)
    fields = np.stack([f for _, f in motions])  # (K, 2, H, W)
    return np.einsum("kt,kchw->tchw", profiles, fields).astype(np.float32)


def _source_maps(
    grid: tuple[np.ndarray, np.ndarray],
    centre: np.ndarray,
    pose: tuple[np.ndarray, np.ndarray],
    displacement: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, where each output pixel is read from: head pose about the face centre, then
    the skin displacement (small, so it is applied at the output position). Shapes (T, H, W)."""
    shift, angle = pose
    map_x, map_y = rigid_source(
        grid[0], grid[1], centre, shift[:, None, None, :], angle[:, None, None]
    )
    return map_x - displacement[:, 0], map_y - displacement[:, 1]


def render_clip(
    emotion: str | None,
    subject: int | SyntheticSubject = 0,
    clip: int = 0,
    config: SyntheticConfig | None = None,
    *,
    n_frames: int | None = None,
    onset: int | None = None,
    apex: int | None = None,
    offset: int | None = None,
    action_units: str | None = None,
    blinks: Sequence[Blink] = (),
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render one clip: frames uint8 (T, H, W) and the truth that made them.

    By default the clip spans onset..offset like a CASME II clip (length jittered around
    `config.n_frames`), or, with `config.context`, that expression somewhere inside a longer
    neutral clip; pass `n_frames` and `onset`/`apex`/`offset` (0-based frame indices) to place it
    yourself. `emotion=None` renders no expression; `action_units` ("1+2", "R12") overrides the
    units the emotion would draw; `blinks` places blinks (start, duration, depth) beside those
    drawn at `config.blink_rate`.
    """
    frames, truth, _ = render_clip_motion(
        emotion,
        subject,
        clip,
        config,
        n_frames=n_frames,
        onset=onset,
        apex=apex,
        offset=offset,
        action_units=action_units,
        blinks=blinks,
    )
    return frames, truth


def render_clip_motion(
    emotion: str | None,
    subject: int | SyntheticSubject = 0,
    clip: int = 0,
    config: SyntheticConfig | None = None,
    *,
    n_frames: int | None = None,
    onset: int | None = None,
    apex: int | None = None,
    offset: int | None = None,
    action_units: str | None = None,
    blinks: Sequence[Blink] = (),
) -> tuple[np.ndarray, dict[str, Any], ClipMotion]:
    """`render_clip`'s frames and truth, and the clip's geometric truth (true optical flow
    between any two frames, true landmarks in every frame): the same clip, bit for bit."""
    config = config or SyntheticConfig()
    if emotion is not None and emotion not in EMOTION_AUS:
        raise ConfigError(f"unknown synthetic emotion {emotion!r}; known: {list(EMOTION_AUS)}")
    person = subject if isinstance(subject, SyntheticSubject) else make_subject(subject, config)
    rng = random_stream(config.seed, 2, person.index, clip)
    jitter = 1.0 + rng.uniform(-config.length_jitter, config.length_jitter)
    episode = max(8, round(config.n_frames * jitter))
    if n_frames is None and config.context > 0 and onset is None and offset is None:
        n_frames = round(episode * (1 + config.context))
        onset = int(rng.integers(0, n_frames - episode + 1))
        offset = onset + episode - 1
    n_frames = n_frames or episode
    onset = 0 if onset is None else onset
    offset = n_frames - 1 if offset is None else offset
    apex = round(onset + rng.uniform(0.25, 0.6) * (offset - onset)) if apex is None else apex
    if not 0 <= onset < apex < offset < n_frames:
        raise ConfigError(f"need 0 <= onset < apex < offset < n_frames, got {onset, apex, offset}")
    variants = EMOTION_AUS[emotion] if emotion else ((),)
    codes = list(variants[int(rng.integers(len(variants)))])
    if action_units is not None:
        codes = [c for c in action_units.split("+") if c]

    size = config.size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    amplitude = float(rng.uniform(*config.amplitude_px)) * config.scale
    motions = _unit_motions(rng, codes, person, amplitude, (n_frames, onset, apex, offset), (x, y))
    peak_px = float(np.hypot(*sum(f for _, f in motions)).max()) if motions else 0.0
    tic = _tic_motion(rng, person, config.tic_amplitude * amplitude, n_frames, (x, y))
    motions += tic
    pose = _head_drift(rng, n_frames, config, person.drift_gain)
    centre = np.array([person.face.cx, person.face.cy], np.float32) * size
    displacement = _displacement(motions, n_frames, (size, size))
    map_x, map_y = _source_maps((x, y), centre, pose, displacement)
    closure, blinked = _blink_alpha(n_frames, rng, config.blink_rate, blinks)
    warped = np.stack(
        [
            cv2.remap(
                _blink_frame(person, float(closure[t]), (x, y)),
                map_x[t],
                map_y[t],
                cv2.INTER_CUBIC,
                borderMode=cv2.BORDER_REFLECT101,
            )
            for t in range(n_frames)
        ]
    )
    # Photometric nuisance: a slow brightness gradient change, then sensor noise.
    light = (rng.uniform(-1, 1, size=3) * config.illumination).astype(np.float32)
    light_map = light[0] + light[1] * (2 * x / size - 1) + light[2] * (2 * y / size - 1)
    progress = np.linspace(0.0, 1.0, n_frames, dtype=np.float32)[:, None, None]
    warped *= 1.0 + light_map * progress
    warped += config.noise_std * rng.standard_normal(warped.shape, dtype=np.float32)
    frames = np.clip(np.rint(warped), 0, 255).astype(np.uint8)

    truth = {
        "emotion": emotion,
        "action_units": "+".join(codes),
        "fps": config.fps,
        "subject": person.index,
        "clip": clip,
        "n_frames": n_frames,
        "onset": onset if codes else None,
        "apex": apex if codes else None,
        "offset": offset if codes else None,
        "amplitude_px": round(amplitude, 3),  # the clip's drawn amplitude
        "peak_px": round(peak_px, 3),  # the largest displacement it produced, all units at once
        "blinks": blinked,
        "tic_apex": int(np.argmax(tic[0][0])) if tic else None,  # the habitual twitch's peak
        "drift_px": round(float(np.hypot(*(pose[0][-1] - pose[0][0]))), 3),
    }
    motion = ClipMotion(centre, *pose, displacement, face_points68(person.face, size))
    return frames, truth, motion
