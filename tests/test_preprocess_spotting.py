"""Apex spotting: the methods, head drift, blinks, long clips, confidence, template timing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from merkit.errors import ConfigError
from merkit.preprocess.config import DEFAULT_SPOTTING, SPOTTING_METHODS
from merkit.preprocess.eyes import find_eyes
from merkit.preprocess.spotting import METHODS, fit_movement, get_method, spot, thumbnails
from merkit.synthetic import SyntheticConfig, render_clip
from preprocess_clips import MOUTH, amplitudes, face_image, local_warp

# Synthetic clips as the demo makes them, without the habitual twitches (a second movement whose
# timing no spotter can tell from the coded one) unless a test wants them.
PLAIN = SyntheticConfig(tic_amplitude=0.0, blink_rate=0.0)


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
    assert spot(frames).apex == 6
    before = spot(frames, "first-frame")
    assert before.apex == 6 and before.eyes == "none"
    assert spot(frames[:1]).apex == 0


def test_the_light_config_names_every_method_in_order() -> None:
    """`PrepareConfig` and the command line check names against the config's list, which has
    to match the methods that exist."""
    assert tuple(METHODS) == SPOTTING_METHODS


@pytest.mark.parametrize("method", SPOTTING_METHODS)
def test_every_method_gives_a_curve_and_names_itself(method: str) -> None:
    frames = _clip({12: 4.0}, count=25, width=12)[:, ::2, ::2]
    found = spot(frames, method)
    assert found.method == method and found.profile.shape == (25,)
    assert abs(found.apex - 12) <= 2 and 0.0 <= found.confidence <= 1.0
    assert get_method(method).follows


def test_unknown_method_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown spotting method 'peak'; choose one of regis"):
        spot(np.zeros((5, 32, 32), np.uint8), "peak")


def test_head_drift_sends_the_old_apex_to_the_clip_edge_but_not_the_new_one() -> None:
    """A 2 px head drift grows to the clip's end: the frame furthest from the first is the last."""
    config = dataclasses.replace(PLAIN, drift_px=2.0, amplitude_px=(1.2, 1.2))
    frames, truth = render_clip("surprise", 3, 0, config, n_frames=30, onset=0, apex=12, offset=29)
    assert spot(frames, "first-frame").apex == len(frames) - 1
    found = spot(frames)
    assert found.method == DEFAULT_SPOTTING and abs(found.apex - truth["apex"]) <= 2
    assert found.confidence > 0.6


def test_a_blink_alone_has_no_clear_peak() -> None:
    """No expression, two blinks: the eyes are masked, so nothing stands out of the noise."""
    config = dataclasses.replace(PLAIN, blink_rate=6.0)
    frames, truth = render_clip(None, 2, 2, config, n_frames=30)
    assert truth["blinks"] and truth["apex"] is None
    found = spot(frames)
    assert found.eyes in ("landmarks", "eye-detector") and found.confidence < 0.3
    unmasked = spot(frames, "feature-difference")  # Moilanen et al. do not mask the eyes
    assert any(start <= unmasked.apex <= end for start, end in truth["blinks"])
    assert unmasked.confidence > found.confidence + 0.3


def test_an_expression_is_found_beside_a_blink() -> None:
    config = dataclasses.replace(PLAIN, blink_rate=4.0)
    frames, truth = render_clip("happiness", 5, 3, config, n_frames=30, onset=0, apex=9, offset=29)
    blink_middles = [(a + b) / 2 for a, b in truth["blinks"]]
    assert any(abs(m - 9) > 8 for m in blink_middles)  # a blink well away from the apex
    assert abs(spot(frames).apex - 9) <= 2
    assert abs(spot(frames, "first-frame").apex - 9) > 3


def test_a_long_clip_with_the_movement_off_centre() -> None:
    """Twice the expression's length, the expression in the first half, double drift."""
    config = dataclasses.replace(PLAIN, context=1.0, drift_px=2.0, amplitude_px=(1.5, 1.5))
    frames, truth = render_clip("disgust", 4, 2, config)
    assert len(frames) >= 2 * (truth["offset"] - truth["onset"] + 1) - 1
    assert truth["onset"] > 0 and truth["offset"] < len(frames) - 1
    for window in (None, 20):
        assert abs(spot(frames, window=window).apex - truth["apex"]) <= 3


def test_confidence_is_high_for_a_clear_movement_and_low_for_a_still_clip() -> None:
    moving = spot(_clip({30: 3.0}, count=60, width=20), window=20)
    still = spot(_clip({}, count=60, seed=1), window=20)
    assert abs(moving.apex - 30) <= 2 and moving.confidence > 0.8
    assert still.confidence < 0.4
    assert still.noise > 0 and moving.profile.max() > 5 * moving.noise


def test_eyes_are_found_and_masked_on_a_photograph() -> None:
    face = face_image()[50:210, 140:300]  # the astronaut's face filling a 160 px crop
    eyes = find_eyes(face)
    assert eyes is not None and eyes.source == "landmarks"
    assert 40 < eyes.centres[:, 1].mean() < 65 and eyes.centres[0, 0] < eyes.centres[1, 0]
    mask = eyes.mask((64, 64))
    cx, cy = (eyes.centres[0] * 64 / 160).astype(int)
    mouth_x, mouth_y = ((np.array(MOUTH) - [140, 50]) * 64 / 160).astype(int)
    assert mask[cy, cx] and not mask[mouth_y, mouth_x]
    assert 0.02 < mask.mean() < 0.15
    assert find_eyes(np.full((64, 64), 128, np.uint8)) is None


def test_template_fit_times_the_whole_movement() -> None:
    """The mouth moves over frames 32..48 (apex 40)."""
    frames = _clip({40: 4.0}, count=100, width=16)
    assert thumbnails(frames).shape == (100, 61, 64)  # 64 px wide, aspect kept
    found = spot(frames, window=20)
    assert abs(found.apex - 40) <= 1
    onset, offset = fit_movement(frames, found.apex, window=20)
    assert abs(onset - 32) <= 1 and abs(offset - 48) <= 2
    late_onset, late_offset = fit_movement(frames, found.apex + 2, window=20)
    assert abs(late_onset - onset) <= 1 and abs(late_offset - offset) <= 2
