"""Apex spotting: the methods, drift, blinks against lid movements, frame rates, confidence,
template timing, and the eye finder."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from merkit.errors import ConfigError, DataLayoutError
from merkit.preprocess import face as face_module
from merkit.preprocess.config import DEFAULT_SPOTTING, SPOTTING_METHODS
from merkit.preprocess.face import detect_face, face_landmarks
from merkit.preprocess.spotting import METHODS, check_fps, find_eyes, fit_movement, get_method, spot
from merkit.preprocess.spotting import eyes as eyes_module
from merkit.preprocess.spotting.blinks import blink_frames
from merkit.preprocess.spotting.curve import reaches, thumbnails
from merkit.preprocess.spotting.eyes import EYE_DETECTOR, LANDMARKS
from merkit.preprocess.spotting.registration import register, warp_all
from merkit.synthetic import SyntheticConfig, render_clip
from merkit.synthetic.photo import render_photo_clip
from merkit.synthetic.spec import ClipSpec, fill_frames
from preprocess_clips import MOUTH, amplitudes, face_image, local_warp

# Synthetic clips as the demo makes them, without the habitual twitches (a second movement whose
# timing no spotter can tell from the coded one) unless a test wants them.
PLAIN = SyntheticConfig(tic_amplitude=0.0, blink_rate=0.0)
PHOTO_CROP = (slice(40, 264), slice(110, 334))  # the astronaut's head, 224 px
TIGHT_CROP = (slice(40, 150), slice(165, 275))  # her face, about as the datasets crop it


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


@cache
def _photo() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face as a tight 224 px crop, and its 68 landmarks."""
    photo = np.ascontiguousarray(face_image()[PHOTO_CROP])
    pad = 112
    padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    box = detect_face(padded)
    assert box is not None
    return photo, face_landmarks(padded, box) - pad


def _photo_clip(spec: ClipSpec, seed: int = 0) -> np.ndarray:
    """`spec` on the astronaut, as 128 px aligned crops (what `--aligned` spots on)."""
    photo, points = _photo()
    frames = render_photo_clip(photo, points, spec, np.random.default_rng(seed))
    return np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in frames])


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


def test_unknown_method_and_rate_are_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown spotting method 'peak'; choose one of regis"):
        spot(np.zeros((5, 32, 32), np.uint8), "peak")
    assert check_fps(30) == 30.0
    for bad in (-5.0, 0.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="expected a frame rate above 0 frames per second"):
            check_fps(bad)


def test_reaches_are_set_in_milliseconds() -> None:
    """The same 40 ms .. 1 s at any rate: 8 .. 200 frames at 200 fps, 1 .. 30 at 30 fps; never
    beyond the clip, which is a reach itself when shorter."""
    assert list(reaches(1000, 200.0)) == [8, 16, 32, 64, 128]
    assert list(reaches(1000, 30.0)) == [1, 2, 5, 10, 19]
    assert list(reaches(40, 200.0)) == [8, 16, 32, 39]


def test_registration_follows_a_drifting_head() -> None:
    """A face moved by up to 4 px (a third of its blur scale at the coarsest level) is put back
    to within a tenth of a pixel, and the residual is the noise."""
    face = cv2.GaussianBlur(face_image()[60:188, 140:268].astype(np.float32), (0, 0), 1.0)
    shifts = np.linspace(0, 4, 12)
    frames = np.stack(
        [cv2.warpAffine(face, np.float32([[1, 0, s], [0, 1, -s / 2]]), (128, 128)) for s in shifts]
    )
    registered = register(frames)
    moved = registered.motion[:, [0, 3]] - registered.motion[0, [0, 3]]
    assert np.abs(moved - np.stack([shifts, -shifts / 2], axis=1)).max() < 0.1
    assert np.abs(registered.residuals).mean() < 1.0
    back = warp_all(frames, registered.motion)
    assert back.shape == frames.shape


def test_head_drift_sends_the_old_apex_to_the_clip_edge_but_not_the_new_one() -> None:
    """A 2 px head drift grows to the clip's end: the frame furthest from the first is the last."""
    config = dataclasses.replace(PLAIN, drift_px=2.0, amplitude_px=(1.2, 1.2))
    frames, truth = render_clip("surprise", 3, 0, config, n_frames=30, onset=0, apex=12, offset=29)
    assert spot(frames, "first-frame").apex == len(frames) - 1
    found = spot(frames)
    assert found.method == DEFAULT_SPOTTING and abs(found.apex - truth["apex"]) <= 2
    assert found.confidence > 0.6


def test_slow_drift_over_hundreds_of_frames_at_200_fps() -> None:
    """300 frames (1.5 s) while a photographed head drifts 6 px, turns 1.5 degrees and nears the
    camera by 2 %; the mouth corners move 1.5 px for 250 ms in the middle."""
    spec = ClipSpec("drift", 200.0, 300, 150, 175, 200, "12", 1.5, drift_px=6.0, drift_deg=1.5,
                    drift_scale=0.02)  # fmt: skip
    frames = _photo_clip(spec)
    assert spot(frames, "first-frame").apex in (0, 299)
    assert abs(spot(frames, fps=200.0).apex - 175) <= 3


def test_a_long_movement_at_30_fps_peaks_at_its_apex() -> None:
    """A 900 ms movement is 27 frames at 30 fps: a reach of 0.2 s would compare frames on its
    rise; every reach up to 1 s is tried."""
    spec = ClipSpec("long30", 30.0, 60, 15, 27, 41, "1+2", 2.0, rise="linear", fall="cosine")
    assert abs(spot(_photo_clip(spec), fps=30.0).apex - 27) <= 2


def test_a_lid_movement_is_spotted_and_a_blink_beside_it_left_out() -> None:
    """AU7 (the lid tightener) on both eyes peaks at frame 100; a full blink of 300 ms ends
    50 ms before its onset. The blink moves the lids far more, yet is found and left out."""
    spec = ClipSpec("eyelid", 200.0, 180, 80, 100, 130, "7", 2.0, blinks=((10.0, 60.0, 1.0),))
    frames = _photo_clip(spec)
    found = spot(frames, fps=200.0)
    assert found.eyes in (LANDMARKS, EYE_DETECTOR)
    assert found.blinks and found.blinks[0][0] <= 15 and 60 <= found.blinks[0][1] <= 78
    assert abs(found.apex - 100) <= 3
    unaware = spot(frames, "feature-difference", fps=200.0)
    assert found.blinks[0][0] <= unaware.apex <= found.blinks[0][1]  # a blind spotter's pick


def test_a_blink_alone_has_no_clear_peak() -> None:
    """No expression, two blinks: both are found and left out, so nothing stands out."""
    config = dataclasses.replace(PLAIN, blink_rate=6.0)
    frames, truth = render_clip(None, 2, 2, config, n_frames=30)
    assert truth["blinks"] and truth["apex"] is None
    found = spot(frames)
    assert found.eyes in (LANDMARKS, EYE_DETECTOR) and found.blinks
    assert found.confidence < 0.3
    unmasked = spot(frames, "feature-difference")  # Moilanen et al. do not look for blinks
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
    for longest in (None, 20):
        assert abs(spot(frames, longest=longest).apex - truth["apex"]) <= 3


def test_confidence_is_high_for_a_clear_movement_and_low_for_a_still_clip() -> None:
    moving = spot(_clip({30: 3.0}, count=60, width=20))
    still = spot(_clip({}, count=60, seed=1))
    assert abs(moving.apex - 30) <= 2 and moving.confidence > 0.8
    assert still.confidence < 0.4
    assert still.noise > 0 and moving.profile.max() > 5 * moving.noise


def test_a_blink_closes_both_openings_more_than_the_skin_above() -> None:
    """Closure series (see `blinks.closure`) at 200 fps: both openings past CLOSED and ahead of
    the skin above them is a blink (here by 0.18: a lead of 0.25, the earlier rule, missed such
    photographed blinks), from the frame where the lead starts to rise, and where the skin above
    moves nearly as much as the openings (a hooded lid); a brow moving the openings less, one
    eye alone, and skin moving more than the openings are not."""
    rest = np.full((100, 2), 0.03)

    def blinking(openings: np.ndarray, above: np.ndarray) -> np.ndarray:
        return np.flatnonzero(blink_frames(openings, above, 200.0))

    openings, above = rest.copy(), rest.copy()
    openings[40:60], above[40:60] = 0.3, 0.12
    assert list(blinking(openings, above)) == list(range(37, 63))  # and 10 ms either side
    brow = rest.copy()
    brow[40:60] = 0.2
    assert blinking(brow, rest).size == 0
    one_eye = rest.copy()
    one_eye[40:60, 0] = 0.9
    assert blinking(one_eye, rest).size == 0
    skin = rest.copy()
    skin[40:60] = 0.8
    assert blinking(np.where(skin > 0.5, 0.3, rest), skin).size == 0  # a brow: skin moves most
    assert blinking(skin, 0.9 * skin).size > 0  # a hooded lid: its skin moves nearly as much


def test_eyes_are_found_on_a_photograph() -> None:
    """From dlib's eye corners, and by the eye cascade: the two agree within 5 % of the crop."""
    face = np.ascontiguousarray(face_image()[50:210, 140:300])  # her face in a 160 px crop
    eyes = find_eyes(face)
    assert eyes is not None and eyes.source == LANDMARKS
    assert 40 < eyes.centres[:, 1].mean() < 65 and eyes.centres[0, 0] < eyes.centres[1, 0]
    assert np.all((eyes.widths > 0.1 * 160) & (eyes.widths < 0.3 * 160))
    cascade = eyes_module._from_eye_detector(face)
    assert cascade is not None and cascade.source == EYE_DETECTOR
    assert np.abs(cascade.centres - eyes.centres).max() < 8
    masks = eyes.masks((64, 64))
    cx, cy = (eyes.centres[0] * 64 / 160).astype(int)
    mouth_x, mouth_y = ((np.array(MOUTH) - [140, 50]) * 64 / 160).astype(int)
    assert masks[0, cy, cx] and not masks.any(axis=0)[mouth_y, mouth_x]
    assert 0.02 < masks.any(axis=0).mean() < 0.15
    assert find_eyes(np.full((64, 64), 128, np.uint8)) is None


def test_a_face_that_fills_the_frame_is_found() -> None:
    """A tight face crop upscaled to 640x480: no margin round the face for the detectors, which
    find it on a padded copy; the crop, which would reach far beyond the frame, is cut to the
    part the frame shows, so that the face fills the crop."""
    frame = fill_frames(np.ascontiguousarray(face_image()[TIGHT_CROP])[None], (640, 480))[0]
    assert face_module._detect(frame, face_module._dlib_boxes) is None
    box = detect_face(frame)
    assert box is not None and box[2] - box[0] > 400 and box[3] - box[1] > 400
    found = face_module.alignment_from_landmarks(face_landmarks(frame, box), 128, 0.1)
    assert found.coverage(frame.shape).mean() < 0.6
    alignment = face_module.estimate_alignment(frame, 128, 0.1)
    assert alignment.face == face_module.CUT_TO_FRAME
    assert alignment.coverage(frame.shape).mean() > 0.85  # a slightly turned crop: corners


def test_a_frame_no_detector_sees_a_face_in_is_the_face_where_it_shows_eyes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No face box, but a pair of eyes in the whole frame: the whole frame is the crop, and says
    so; a frame without eyes is still refused."""
    frame = fill_frames(np.ascontiguousarray(face_image()[TIGHT_CROP])[None], (640, 480))[0]
    monkeypatch.setattr(face_module, "detect_face", lambda gray: None)
    alignment = face_module.estimate_alignment(frame, 128, 0.1)
    assert alignment.face == face_module.WHOLE_FRAME
    assert alignment.coverage(frame.shape).all()
    with pytest.raises(DataLayoutError, match="no face found"):
        face_module.estimate_alignment(np.full((480, 640), 90, np.uint8), 128, 0.1)


def test_the_face_detector_is_read_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built once (half a second) and saved; read back (a millisecond), it finds the same face."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    face_module.frontal_face_detector.cache_clear()
    try:
        first = detect_face(face_image())
        assert (tmp_path / "merkit" / face_module.DETECTOR_CACHE).is_file()
        face_module.frontal_face_detector.cache_clear()
        assert detect_face(face_image()) == first
    finally:
        face_module.frontal_face_detector.cache_clear()


def test_template_fit_times_the_whole_movement() -> None:
    """The mouth moves over frames 32..48 (apex 40)."""
    frames = _clip({40: 4.0}, count=100, width=16)
    assert thumbnails(frames).shape == (100, 122, 128)  # 128 px wide, aspect kept
    found = spot(frames)
    assert abs(found.apex - 40) <= 1
    onset, offset = fit_movement(frames, found.apex, window=20)
    assert abs(onset - 32) <= 1 and abs(offset - 48) <= 2
    late_onset, late_offset = fit_movement(frames, found.apex + 2, window=20)
    assert abs(late_onset - onset) <= 1 and abs(late_offset - offset) <= 2
