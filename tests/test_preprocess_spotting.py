"""Apex spotting within an interval, movement spotting in a long clip, template timing."""

from __future__ import annotations

import numpy as np

from merkit.preprocess.spotting import (
    fit_movement,
    motion_profile,
    spot_apex,
    spot_intervals,
    thumbnails,
)
from preprocess_clips import amplitudes, face_image, local_warp


def _clip(peaks: dict[int, float], count: int, width: int = 10, seed: int = 0) -> np.ndarray:
    """A noisy still face with a mouth movement of `width` frames centred on each peak."""
    rng = np.random.default_rng(seed)
    amount = np.zeros(count)
    for apex, peak in peaks.items():
        half = width // 2
        amount[apex - half : apex + half + 1] = amplitudes(2 * half + 1, half, peak)
    face = face_image()[60:260, 120:330]
    frames = [local_warp(face, a, centre=(108.0, 100.0)) for a in amount]
    noise = rng.normal(0, 2.0, (count, *face.shape))
    return np.clip(np.stack(frames) + noise, 0, 255).astype(np.uint8)


def test_apex_is_the_frame_that_moved_most_from_onset() -> None:
    frames = np.stack([local_warp(face_image(), a) for a in amplitudes(9, 6, 3.0)])
    profile = motion_profile(frames)
    assert profile[0] == 0 and int(np.argmax(profile)) == 6
    assert spot_apex(frames) == 6
    assert spot_apex(frames[:1]) == 0


def test_long_clip_spotting_finds_each_movement() -> None:
    frames = _clip({40: 4.0, 110: 3.0}, count=150)
    spots = spot_intervals(frames, window=20, min_score=0.2)
    assert [abs(s.apex - a) <= 2 for s, a in zip(spots, (40, 110), strict=True)] == [True, True]
    first = spots[0]
    assert first.onset < first.apex < first.offset
    assert first.onset >= 30 and first.offset <= 50
    assert spots[0].score > spots[1].score


def test_still_clip_has_no_spots_above_the_noise_floor() -> None:
    frames = _clip({}, count=60, seed=1)
    assert spot_intervals(frames, window=20, min_score=0.2) == []


def test_template_fit_times_the_whole_movement() -> None:
    """The mouth moves over frames 32..48 (apex 40); the half-peak spot sees only its middle."""
    frames = _clip({40: 4.0}, count=100, width=16)
    assert thumbnails(frames).shape == (100, 61, 64)  # 64 px wide, aspect kept
    (spot,) = spot_intervals(frames, window=20, threshold=0.0, min_score=0.2)
    assert (spot.onset, spot.offset) == (37, 43)
    onset, apex, offset = fit_movement(frames, spot.apex, window=20)
    assert abs(onset - 32) <= 1 and abs(apex - 40) <= 1 and abs(offset - 48) <= 1
    assert fit_movement(frames, spot.apex + 2, window=20) == (onset, apex, offset)
