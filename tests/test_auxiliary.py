"""Auxiliary-output figures: the synthetic clips' geometric truth (true flow, true landmarks),
end-point error and landmark NME, and their table in a run's report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from merkit.errors import ConfigError
from merkit.evaluation.auxiliary import end_point_error, landmark_nme
from merkit.evaluation.document import to_html, to_markdown
from merkit.evaluation.predictions import Predictions
from merkit.evaluation.report import run_document, run_metrics
from merkit.evaluation.run_folder import AUX_FILE, OUTPUT_FILES, RunFolder
from merkit.evaluation.run_meta import RunMeta
from merkit.preprocess.flow import compute_flow
from merkit.synthetic import SyntheticConfig, render_clip, render_clip_motion
from merkit.synthetic.faces import face_points68, random_face

STILL = SyntheticConfig(size=64, noise_std=0.0, illumination=0.0, blink_rate=0.0)


def test_render_clip_motion_is_render_clip_plus_its_truth() -> None:
    frames, truth, motion = render_clip_motion("surprise", 2, 1, STILL)
    again, same = render_clip("surprise", 2, 1, STILL)
    assert np.array_equal(frames, again) and truth == same
    assert motion.displacement.shape == (len(frames), 2, 64, 64)
    assert motion.neutral_points.shape == (68, 2)


def test_true_flow_and_landmarks_of_a_head_translation() -> None:
    """No expression, no rotation: every point moves by the head's shift, chin beyond the frame
    included."""
    config = dataclasses.replace(STILL, drift_px=3.0, drift_deg=0.0, tic_amplitude=0.0)
    frames, _, motion = render_clip_motion(None, 1, 0, config)
    last = len(frames) - 1
    moved = motion.shift[last] - motion.shift[0]
    assert np.hypot(*moved) > 0.5
    flow = motion.flow(0, last)
    np.testing.assert_allclose(flow, np.broadcast_to(moved[:, None, None], flow.shape), atol=1e-3)
    assert not motion.flow(2, 2).any()
    points = motion.track()
    assert points.shape == (len(frames), 68, 2) and points[:, :, 1].max() > 63  # below the frame
    np.testing.assert_allclose(points[last] - points[0], np.broadcast_to(moved, (68, 2)), atol=1e-3)


def test_true_flow_of_an_expression_explains_the_frames_best() -> None:
    """Warping the apex frame back by the true flow matches the onset frame better than by
    TV-L1's estimate (which smooths the expression's local motion) or by no motion."""
    config = dataclasses.replace(STILL, amplitude_px=(4.0, 4.0), drift_px=0.5)
    frames, truth, motion = render_clip_motion("happiness", 1, 0, config)
    apex = truth["apex"]
    flow = motion.flow(0, apex)
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)

    def residual(field: np.ndarray) -> float:
        back = cv2.remap(
            frames[apex].astype(np.float32), x + field[0], y + field[1], cv2.INTER_CUBIC
        )
        return float(np.abs(back - frames[0])[8:-8, 8:-8].mean())

    estimate = compute_flow(frames[0], frames[apex], "tvl1").transpose(2, 0, 1)
    assert residual(flow) < residual(estimate) < residual(0 * flow)
    assert residual(flow) < 0.6 * residual(0 * flow) and np.hypot(*flow).max() > 2
    points = motion.track()
    inside = (points[0] > 2).all(1) & (points[0] < 61).all(1)
    sampled = np.stack(
        [cv2.remap(f, *points[0][inside].T[:, None], cv2.INTER_LINEAR)[0] for f in flow], axis=1
    )
    np.testing.assert_allclose(points[0][inside] + sampled, points[apex][inside], atol=0.15)


def test_face_points_follow_the_dlib_order() -> None:
    face = random_face(np.random.default_rng(4))
    points = face_points68(face, 100)
    assert points.shape == (68, 2)
    left_eye, right_eye = points[36:42].mean(0), points[42:48].mean(0)
    np.testing.assert_allclose(
        left_eye, [(face.cx - face.eye_dx) * 100, face.eye_y * 100], atol=0.5
    )
    assert right_eye[0] > left_eye[0]  # 36-41 on the image's left
    assert points[8, 1] == points[:17, 1].max()  # the chin is the lowest jaw point
    assert np.all(np.diff(points[:9, 1]) > 0) and np.all(np.diff(points[8:17, 1]) < 0)
    assert points[17:22, 1].max() < left_eye[1] and points[30, 1] > points[27, 1]  # brows, nose
    assert points[48, 0] < points[51, 0] < points[54, 0] and points[57, 1] > points[51, 1]


def test_end_point_error_and_nme_by_hand() -> None:
    truth = np.zeros((2, 2, 3, 3))
    truth[:, 0, 0, 0] = 1.0  # one moving pixel per field
    pred = truth.copy()
    pred[:, :, 1, 1] = [3.0, 4.0]  # a 5 px error on a still pixel
    assert end_point_error(pred, truth) == pytest.approx(5 / 9)
    assert end_point_error(pred, truth, min_motion=0.5) == 0.0
    with pytest.raises(ConfigError, match="no pixel moves"):
        end_point_error(pred, truth, min_motion=2.0)
    with pytest.raises(ConfigError, match=r"\(\.\.\., 2, H, W\)"):
        end_point_error(pred[:, :1], truth[:, :1])
    points = np.zeros((68, 2))
    points[42:48, 0] = 20.0  # inter-pupil distance 20
    off = points.copy()
    off[:2] += [3.0, 4.0]  # two points 5 px off
    assert landmark_nme(off, points) == pytest.approx(2 * 5 / 68 / 20)
    assert landmark_nme(np.stack([off, points]), np.stack([points, points])) == pytest.approx(
        5 / 68 / 20  # the mean over the two faces
    )


def test_aux_figures_round_trip_and_reach_the_report(tmp_path: Path) -> None:
    rows = [
        {"output": "MOL flow head", "measure": "EPE (px)", "value": 0.123456, "against": "truth"}
    ]
    folder = RunFolder(tmp_path)
    path = folder.write_aux(rows, "how it was measured")
    assert path.name == AUX_FILE and json.loads(path.read_text())["rows"] == rows
    aux = folder.read_aux()
    assert aux == {"note": "how it was measured", "rows": rows}
    meta = RunMeta.from_dict({"config": {}})
    document = run_document(meta, _metrics(), b"", None, aux)
    text = to_markdown(document)
    assert (
        "## Auxiliary outputs" in text and "| MOL flow head | EPE (px) | 0.1235 | truth |" in text
    )
    assert "how it was measured" in to_html(document) and "0.1235" in to_html(document)
    assert "Auxiliary" not in to_markdown(run_document(meta, _metrics(), b""))
    assert AUX_FILE in OUTPUT_FILES  # a replaced run does not keep the figures of the last one
    assert RunFolder(tmp_path / "none").read_aux() is None
    with pytest.raises(ConfigError, match="lacks against"):
        folder.write_aux([{"output": "x", "measure": "m", "value": 1.0}], "")
    (tmp_path / AUX_FILE).write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        folder.read_aux()


def _metrics() -> dict:
    """The metrics of a two-sample run, as the report reads them."""
    table = Predictions(
        dataset=["d", "d"],
        subject=["s1", "s2"],
        sample=["a", "b"],
        true=["x", "y"],
        predicted=["x", "x"],
    )
    return run_metrics(table, ["x", "y"])
