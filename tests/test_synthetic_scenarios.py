"""The hard spotting clips: scenario groups, photo clips, placed blinks, the CASME II writer."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from merkit.data.registry import load_dataset
from merkit.preprocess.face import detect_face, face_landmarks
from merkit.synthetic import SyntheticConfig, render_clip
from merkit.synthetic.clips import blink_closure
from merkit.synthetic.dataset import TRUTH_NAME
from merkit.synthetic.photo import photo_anchors, render_photo_clip
from merkit.synthetic.scenarios import (
    EYELID,
    GROUPS,
    draw_spec,
    finish,
    render_drawn,
    write_clip_set,
)
from merkit.synthetic.spec import ClipSpec, episode_profile, head_pose
from preprocess_clips import face_image

HEAD = (slice(40, 264), slice(110, 334))  # the astronaut's head, 224 px


@cache
def _photo() -> tuple[np.ndarray, np.ndarray]:
    photo = np.ascontiguousarray(face_image()[HEAD])
    padded = cv2.copyMakeBorder(photo, 112, 112, 112, 112, cv2.BORDER_REPLICATE)
    box = detect_face(padded)
    assert box is not None
    return photo, face_landmarks(padded, box) - 112


@pytest.mark.parametrize("group", GROUPS)
def test_each_group_draws_what_it_stands_for(group: str) -> None:
    specs = [draw_spec(group, np.random.default_rng([4, i])) for i in range(30)]
    assert draw_spec(group, np.random.default_rng([4, 0])) == specs[0]  # seeded
    for spec in specs:
        assert 0 < spec.onset < spec.apex < spec.offset < spec.n_frames - 1
        assert spec.n_frames >= 36 and spec.group == group
        clear = max(1, round(0.04 * spec.fps))  # 40 ms
        for start, duration, depth in spec.blinks:  # never on the apex, inside the clip
            assert start >= 0 and start + duration < spec.n_frames and 0.7 <= depth <= 1.0
            assert not start - clear <= spec.apex <= start + duration + clear
    episodes = [s.offset - s.onset + 1 for s in specs]
    if group == "long30":
        assert {s.fps for s in specs} == {30.0} and min(episodes) >= 21 and max(episodes) <= 30
    else:
        assert {s.fps for s in specs} == {200.0} and 40 <= min(episodes) <= max(episodes) <= 100
    if group == "drift":
        assert all(150 <= s.n_frames <= 395 and 3 <= s.drift_px <= 8 for s in specs)
    if group == "low":
        assert all(0.5 <= s.amplitude <= 1.0 for s in specs)
    if group == "eyelid":
        assert {s.codes for s in specs} <= set(EYELID)
    if group == "blink":
        assert all(1 <= len(s.blinks) <= 2 for s in specs)
    if group == "jpeg":
        assert all(30 <= s.jpeg_quality <= 60 for s in specs)
    assert all((s.fill is not None) == (group == "filling") for s in specs)


def test_time_courses() -> None:
    spec = ClipSpec("x", 200.0, 60, 10, 20, 40, "12", 1.0, rise="linear", fall="ease-in")
    profile = episode_profile(spec)
    assert profile[:11].max() == 0 and profile[20] == 1 and profile[40:].max() == 0
    assert profile[15] == pytest.approx(0.5) and profile[30] == pytest.approx(0.25)
    closure = blink_closure(60, (10.0, 30.0, 0.9))
    assert closure[:10].max() == 0 and closure[40:].max() == 0
    assert int(np.argmax(closure)) in (20, 21) and closure.max() == pytest.approx(0.9, abs=0.01)
    shift, angle, scale = head_pose(
        ClipSpec("x", 200.0, 50, 5, 10, 20, "1", 1.0, drift_px=4.0, drift_deg=1.0,
                 drift_scale=0.02), np.random.default_rng(0))  # fmt: skip
    assert np.allclose(shift[0], 0) and angle[0] == 0 and scale[0] == 1
    assert 3.0 < np.hypot(*shift[-1]) < 5.0 and abs(np.degrees(angle[-1])) == pytest.approx(1.0)
    assert abs(scale[-1] - 1) == pytest.approx(0.02)


def test_a_photo_moves_where_its_action_unit_is() -> None:
    photo, points = _photo()
    anchors = photo_anchors(points)
    assert (
        anchors["mouth_corner_L"][0] > anchors["mouth_corner_R"][0]
    )  # subject's left: image right
    assert anchors["upper_lid_L"][1] < anchors["eye_L"][1] < anchors["lower_lid_L"][1]
    spec = ClipSpec("x", 200.0, 30, 5, 15, 25, "12", 2.0, noise_std=0.0, light=0.0)
    frames = render_photo_clip(photo, points, spec, np.random.default_rng(0))
    assert frames.shape == (30, 224, 224) and frames.dtype == np.uint8
    change = np.abs(frames[15].astype(float) - frames[0])
    corner = anchors["mouth_corner_L"].astype(int)
    eye = anchors["eye_L"].astype(int)
    near = change[corner[1] - 8 : corner[1] + 8, corner[0] - 8 : corner[0] + 8].mean()
    far = change[eye[1] - 8 : eye[1] + 8, eye[0] - 8 : eye[0] + 8].mean()
    assert near > 3 * far and np.abs(frames[0].astype(float) - photo).mean() < 1.0


def test_a_blink_on_a_photo_covers_both_eyes_and_nothing_else() -> None:
    photo, points = _photo()
    spec = ClipSpec("x", 200.0, 40, 5, 10, 20, "", 0.0, noise_std=0.0, light=0.0,
                    blinks=((20.0, 15.0, 1.0),))  # fmt: skip
    frames = render_photo_clip(photo, points, spec, np.random.default_rng(0)).astype(float)
    shut = int(20 + 0.35 * 15)
    change = np.abs(frames[shut] - frames[0])
    anchors = photo_anchors(points)
    for side in "LR":
        x, y = anchors[f"eye_{side}"].astype(int)
        assert change[y - 4 : y + 4, x - 8 : x + 8].mean() > 10
    x, y = anchors["upper_lip"].astype(int)
    assert change[y - 8 : y + 8, x - 8 : x + 8].max() == 0
    assert np.abs(frames[39] - frames[0]).max() == 0  # reopened
    starting = np.abs(frames[21] - frames[0])  # the lid a tenth of the way down
    for side in "LR":
        x, y = anchors[f"eye_{side}"].astype(int)
        eye = (slice(y - 6, y + 6), slice(x - 10, x + 10))
        assert starting[eye].mean() < 0.3 * change[eye].mean()


def test_a_drawn_clip_takes_placed_blinks_and_the_upper_lid_raiser() -> None:
    config = SyntheticConfig(blink_rate=0.0, tic_amplitude=0.0)
    _, truth = render_clip(None, 1, 0, config, n_frames=40, blinks=((10.0, 12.0, 1.0),))
    assert truth["blinks"] == [(10, 22)]
    frames, truth = render_clip("others", 1, 0, config, n_frames=30, onset=2, apex=12,
                                offset=25, action_units="5")  # fmt: skip
    assert truth["action_units"] == "5" and np.abs(frames[12].astype(int) - frames[2]).max() > 20


def test_clip_sets_are_written_in_casme2_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    specs = [draw_spec("long30", rng), draw_spec("filling", rng)]
    clips = [(spec, "drawn-3", finish(spec, render_drawn(spec, 3, size=64))) for spec in specs]
    assert clips[0][2].shape[1:] == (64, 64) and clips[1][2].shape[1:] == (480, 640)
    cropped = write_clip_set(tmp_path / "a", clips[:1])
    samples = load_dataset("casme2", cropped, "all").samples
    assert len(samples) == 1 and samples[0].frames[0].name.startswith("reg_img")
    assert samples[0].apex == 1 + specs[0].apex and samples[0].fps == 200.0  # CASME II's: --fps
    truth = pd.read_csv(cropped / TRUTH_NAME)
    assert truth.loc[0, "group"] == "long30" and truth.loc[0, "fps"] == 30.0
    raw = write_clip_set(tmp_path / "b", clips[1:])
    assert load_dataset("casme2", raw, "all").samples[0].frames[0].name.startswith("img")
