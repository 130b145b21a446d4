"""Clips made from a face photograph instead of a drawn face: a harder, more realistic test of
apex spotting than the procedural faces (`merkit.synthetic.faces`).

The photograph is moved, never redrawn: action units are the same Gaussian-windowed warps as on
a drawn face (`merkit.synthetic.clips.displacement_field`), anchored at the photo's 68 landmarks
(which the caller finds, e.g. with `merkit.preprocess.face`); a blink pulls the skin above each
eye down over the eye opening (a warp confined to the lids, not a fade); the head drifts
(translation, rotation, scale about the face centre); the light changes slowly; sensor noise is
added. What happens when is a `ClipSpec` (`merkit.synthetic.spec`).
"""

from __future__ import annotations

import cv2
import numpy as np

from merkit.synthetic.clips import displacement_field
from merkit.synthetic.spec import ClipSpec, blink_track, episode_profile, head_pose

# dlib's 68-point scheme: the image's left eye 36-41 is the subject's right ("R").
_EYES = {"R": range(36, 42), "L": range(42, 48)}
_UPPER_LID = {"R": (37, 38), "L": (43, 44)}
_LOWER_LID = {"R": (40, 41), "L": (46, 47)}
_BROW = {"R": (21, 17), "L": (22, 26)}  # inner, outer end
_CORNER = {"R": 48, "L": 54}
_WING = {"R": 31, "L": 35}
CREASE = 1.5  # skin above the upper lid that a blink pulls down, in eye-opening heights


def photo_anchors(points: np.ndarray) -> dict[str, np.ndarray]:
    """Where each action unit acts on a photo, from its (68, 2) landmarks (the anchor names of
    `merkit.synthetic.faces.landmarks`)."""
    p = np.asarray(points, np.float32)
    nose_y = float(p[33, 1])
    anchors = {
        "nose_root": p[27],
        "upper_lip": p[51],
        "lower_lip": p[57],
        "chin": (p[57] + p[8]) / 2,
    }
    for side in ("L", "R"):
        eye = p[list(_EYES[side])].mean(axis=0)
        anchors[f"eye_{side}"] = eye
        anchors[f"upper_lid_{side}"] = p[list(_UPPER_LID[side])].mean(axis=0)
        anchors[f"lower_lid_{side}"] = p[list(_LOWER_LID[side])].mean(axis=0)
        anchors[f"brow_inner_{side}"] = p[_BROW[side][0]]
        anchors[f"brow_outer_{side}"] = p[_BROW[side][1]]
        anchors[f"cheek_{side}"] = np.array([eye[0], (eye[1] + nose_y) / 2], np.float32)
        anchors[f"nose_wing_{side}"] = p[_WING[side]]
        anchors[f"mouth_corner_{side}"] = p[_CORNER[side]]
    return anchors


def _lid_source(
    points: np.ndarray, closure: float, grid: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Where a frame with both lids lowered by `closure` reads each row from (the y map).

    Per eye, the lid edge moves from the upper lid line towards the lower one; the skin between
    the crease and the lid is stretched down to follow it, covering the opening above the edge,
    while the eye below the edge still shows (a lid a tenth closed hides a tenth of the eye).
    """
    x, y = grid
    source = y.copy()
    if closure <= 0:
        return source
    for side in ("L", "R"):
        eye = points[list(_EYES[side])]
        left, right = eye[:, 0].min(), eye[:, 0].max()
        centre_x, half = (left + right) / 2, (right - left) / 2
        centre_y = (eye[0, 1] + eye[3, 1]) / 2
        upper = centre_y - points[list(_UPPER_LID[side]), 1].mean()
        lower = points[list(_LOWER_LID[side]), 1].mean() - centre_y
        across = np.sqrt(np.clip(1 - ((x - centre_x) / half) ** 2, 0, 1))
        lid = centre_y - upper * across
        floor = centre_y + lower * across
        top = lid - CREASE * (upper + lower) * across
        edge = lid + closure * (floor - lid)
        stretch = (y >= top) & (y <= edge) & (across > 0)
        span = np.maximum(edge - top, 1e-3)
        source = np.where(stretch, top + (y - top) * (lid - top) / span, source)
    return source.astype(np.float32)


def render_photo_clip(
    photo: np.ndarray, points: np.ndarray, spec: ClipSpec, rng: np.random.Generator
) -> np.ndarray:
    """(T, H, W) uint8 frames of `spec` on a grayscale photo whose 68 landmarks are `points`."""
    height, width = photo.shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    anchors = photo_anchors(points)
    side_gain = float(rng.uniform(-0.2, 0.2))
    field_ = sum(
        (
            displacement_field(code, anchors, spec.amplitude, (x, y), asymmetry=side_gain)
            for code in spec.units
        ),
        np.zeros((2, height, width), np.float32),
    )
    profile = episode_profile(spec)
    shift, angle, scale = head_pose(spec, rng)
    closure = blink_track(spec)
    centre = np.asarray(points, np.float32).mean(axis=0)
    light = rng.uniform(-1, 1, size=3).astype(np.float32) * spec.light
    light_map = light[0] + light[1] * (2 * x / width - 1) + light[2] * (2 * y / height - 1)
    source = np.asarray(photo, np.float32)
    frames = np.empty((spec.n_frames, height, width), np.uint8)
    for t in range(spec.n_frames):
        cos, sin = np.cos(angle[t]) / scale[t], np.sin(angle[t]) / scale[t]
        dx, dy = x - centre[0] - shift[t, 0], y - centre[1] - shift[t, 1]
        map_x = cos * dx + sin * dy + centre[0] - profile[t] * field_[0]
        map_y = cos * dy - sin * dx + centre[1] - profile[t] * field_[1]
        if closure[t] > 0:
            lid_y = _lid_source(points, float(closure[t]), (x, y))
            map_y = map_y + cv2.remap(lid_y - y, map_x, map_y, cv2.INTER_LINEAR)
        frame = cv2.remap(source, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
        frame *= 1.0 + light_map * (t / max(spec.n_frames - 1, 1))
        frame += spec.noise_std * rng.standard_normal(frame.shape, dtype=np.float32)
        frames[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return frames
