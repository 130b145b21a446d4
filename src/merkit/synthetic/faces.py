"""A procedural face renderer for synthetic micro-expression data (plain NumPy + OpenCV).

The faces are not meant to fool a face detector: they exist so that every stage of merkit can be
exercised (and learnt) without a licensed dataset. What matters is that they have the structures
micro-expression motion is read from (brows, eyelids, nose wings, lip corners, nasolabial folds)
and a skin texture that optical flow can track, and that subjects differ from each other.

Every shape is drawn as a soft analytic mask over the pixel grid, so rendering is resolution
independent and needs no anti-aliasing pass. Lengths in `FaceParams` are fractions of the image
side; `landmarks` turns them into pixels for the motion model.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Subject-relative sides follow FACS: "L" is the subject's left, which the camera sees on the
# image's right (larger x).
SIDES = {"L": 1.0, "R": -1.0}


@dataclass(frozen=True)
class FaceParams:
    """Geometry and appearance of one synthetic subject (lengths are fractions of the side)."""

    cx: float  # face centre
    cy: float
    half_w: float  # half-axes of the face outline
    half_h: float
    jaw: float  # how much the outline narrows towards the chin (0 = ellipse)
    skin: float  # skin brightness, 0..1
    background: float
    hair: float  # hair brightness
    hairline: float  # hairline height above the brows
    light: tuple[float, float]  # linear shading gradient (x, y) across the face
    texture_amp: float  # strength of the smooth skin texture
    texture_seed: int
    eye_y: float
    eye_dx: float  # half distance between the eye centres
    eye_w: float  # half-width of the eye opening
    eye_h: float  # half-height of the eye opening
    iris_r: float
    iris_dark: float
    brow_gap: float  # brow centre height above the eye centre
    brow_len: float  # half-length of a brow
    brow_thick: float
    brow_arch: float
    brow_tilt: float  # inner end lower (>0) or higher (<0) than the outer end
    brow_dark: float
    nose_y: float  # nostril height
    nose_w: float  # half-width of the nose wings
    mouth_y: float
    mouth_w: float  # half-width of the mouth
    lip_thick: float
    lip_dark: float
    mouth_curve: float  # corners up (>0) or down (<0) at rest
    fold: float  # depth of the nasolabial folds
    moles: tuple[tuple[float, float, float, float], ...]  # (x, y, radius, darkness)


def random_face(rng: np.random.Generator) -> FaceParams:
    """Draw a subject: wide enough ranges that subjects are told apart, narrow enough to stay a
    plausible frontal face."""
    u = rng.uniform
    half_w = u(0.34, 0.41)
    eye_dx = u(0.15, 0.19)
    n_moles = int(rng.integers(0, 5))
    moles = tuple(
        (u(0.3, 0.7), u(0.3, 0.85), u(0.006, 0.014), u(0.15, 0.45)) for _ in range(n_moles)
    )
    return FaceParams(
        cx=0.5 + u(-0.02, 0.02),
        cy=0.53 + u(-0.02, 0.02),
        half_w=half_w,
        half_h=u(0.44, 0.5),
        jaw=u(0.15, 0.45),
        skin=u(0.45, 0.82),
        background=u(0.1, 0.9),
        hair=u(0.05, 0.35),
        hairline=u(0.1, 0.16),
        light=(u(-0.25, 0.25), u(-0.15, 0.1)),
        texture_amp=u(0.04, 0.1),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
        eye_y=u(0.4, 0.45),
        eye_dx=eye_dx,
        eye_w=u(0.065, 0.085),
        eye_h=u(0.022, 0.034),
        iris_r=u(0.018, 0.025),
        iris_dark=u(0.55, 0.85),
        brow_gap=u(0.055, 0.08),
        brow_len=u(0.07, 0.095),
        brow_thick=u(0.018, 0.035),
        brow_arch=u(0.005, 0.02),
        brow_tilt=u(-0.01, 0.015),
        brow_dark=u(0.45, 0.8),
        nose_y=u(0.6, 0.65),
        nose_w=u(0.045, 0.065),
        mouth_y=u(0.74, 0.79),
        mouth_w=u(0.08, 0.12),
        lip_thick=u(0.012, 0.022),
        lip_dark=u(0.2, 0.4),
        mouth_curve=u(-0.006, 0.006),
        fold=u(0.04, 0.12),
        moles=moles,
    )


def landmarks(face: FaceParams, size: int) -> dict[str, np.ndarray]:
    """Anchor points (pixels, x then y) where the action units act; paired points per side."""
    f = face
    points: dict[str, tuple[float, float]] = {
        "nose_root": (f.cx, f.eye_y - 0.01),
        "upper_lip": (f.cx, f.mouth_y - f.lip_thick),
        "lower_lip": (f.cx, f.mouth_y + f.lip_thick * 1.2),
        "chin": (f.cx, f.mouth_y + 0.5 * (f.cy + f.half_h - f.mouth_y)),
    }
    for side, sign in SIDES.items():
        ex = f.cx + sign * f.eye_dx
        brow_y = f.eye_y - f.brow_gap
        points[f"eye_{side}"] = (ex, f.eye_y)
        points[f"lower_lid_{side}"] = (ex, f.eye_y + f.eye_h)
        points[f"upper_lid_{side}"] = (ex, f.eye_y - f.eye_h)
        points[f"brow_inner_{side}"] = (ex - sign * 0.7 * f.brow_len, brow_y + f.brow_tilt)
        points[f"brow_outer_{side}"] = (ex + sign * 0.6 * f.brow_len, brow_y)
        points[f"cheek_{side}"] = (ex + sign * 0.2 * f.eye_w, f.eye_y + 0.09)
        points[f"nose_wing_{side}"] = (f.cx + sign * f.nose_w * 0.9, f.nose_y - 0.025)
        points[f"mouth_corner_{side}"] = (f.cx + sign * f.mouth_w, f.mouth_y - f.mouth_curve)
    return {k: np.array(v, dtype=np.float32) * size for k, v in points.items()}


def face_points68(face: FaceParams, size: int) -> np.ndarray:
    """(68, 2) pixel points (x, y) of the neutral face in the order of dlib's 68-point scheme.

    merkit's reading of that scheme on the procedural face, drawn from the same geometry as
    `render_face`: jaw 0-16 along the outline from the eye line on the image's left round the
    chin, brows 17-26 along their centre lines (image left first, outer to inner), nose bridge
    27-30 and nostril line 31-35, eyes 36-47 (corners and lid points of each opening, clockwise
    from the image-left corner), outer lips 48-59 and the closed mouth's inner line 60-67. It is
    the synthetic clips' landmark truth (`merkit.synthetic.truth.ClipMotion.track`).
    """
    f, s = face, float(size)
    cx, cy, hw, hh = f.cx, f.cy, f.half_w, f.half_h
    points: list[tuple[float, float]] = []
    top = np.arcsin(np.clip((f.eye_y - cy) / hh, -1.0, 1.0))
    for angle in np.linspace(top, np.pi - top, 17):  # jaw: image left -> chin -> image right
        y = cy + hh * np.sin(angle)
        below = np.clip((y - cy) / hh, 0.0, 1.0)
        points.append((cx - hw * (1.0 - f.jaw * below**2) * np.cos(angle), y))
    for sign, ends in ((-1.0, (-0.9, 0.9)), (1.0, (-0.9, 0.9))):  # brows, left to right
        bx = cx + sign * f.eye_dx + sign * 0.05 * f.brow_len
        for t in np.linspace(*ends, 5):
            inner = np.clip(-sign * t, 0.0, 1.0)
            y = f.eye_y - f.brow_gap - f.brow_arch * (1.0 - t**2) + f.brow_tilt * inner
            points.append((bx + t * f.brow_len, y))
    for y in np.linspace(f.eye_y, f.nose_y - 0.02, 4):  # bridge, root to tip
        points.append((cx, y))
    for k in (-0.85, -0.4, 0.0, 0.4, 0.85):  # under the nose, left to right
        points.append((cx + k * f.nose_w, f.nose_y - (0.01 if abs(k) > 0.5 else 0.0)))
    lid = np.sqrt(1 - 1 / 9)  # lid height a third of the way from the centre to a corner
    for sign in (-1.0, 1.0):  # eyes: corner, two upper, corner, two lower (clockwise)
        ex, ew, eh = cx + sign * f.eye_dx, f.eye_w, f.eye_h
        for dx, dy in ((-1, 0), (-1 / 3, -lid), (1 / 3, -lid), (1, 0), (1 / 3, lid), (-1 / 3, lid)):
            points.append((ex + dx * ew, f.eye_y + dy * eh))
    mw, lip = f.mouth_w, f.lip_thick

    def line(t: float) -> float:
        return f.mouth_y - f.mouth_curve * t**2

    def upper(t: float) -> float:
        return line(t) - lip * (1.0 - t**2) * (0.8 + 0.25 * np.cos(np.pi * t * 3.0))

    def lower(t: float) -> float:
        return line(t) + 1.3 * lip * (1.0 - t**2)

    ts = (-2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3)
    points.append((cx - mw, line(1.0)))  # 48: left corner
    points += [(cx + t * mw, upper(t)) for t in ts]  # 49-53
    points.append((cx + mw, line(1.0)))  # 54: right corner
    points += [(cx + t * mw, lower(t)) for t in reversed(ts)]  # 55-59
    points.append((cx - 0.9 * mw, line(0.9)))  # 60: inner left corner
    points += [(cx + t * mw, line(t)) for t in (-1 / 3, 0.0, 1 / 3)]  # 61-63
    points.append((cx + 0.9 * mw, line(0.9)))  # 64
    points += [(cx + t * mw, line(t)) for t in (1 / 3, 0.0, -1 / 3)]  # 65-67
    return np.asarray(points, dtype=np.float32) * s


def smooth_noise(rng: np.random.Generator, size: int, octaves: tuple[int, ...]) -> np.ndarray:
    """Zero-mean band-limited noise: random grids upsampled and summed, coarser ones stronger."""
    out = np.zeros((size, size), np.float32)
    for cells in octaves:
        grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
        out += cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC) / np.sqrt(cells)
    return out / (out.std() + 1e-6)


def _soft(signed_distance: np.ndarray, edge: float) -> np.ndarray:
    """1 inside (distance < 0), 0 outside, with a linear ramp `edge` pixels wide."""
    return np.clip(0.5 - signed_distance / edge, 0.0, 1.0)


def _ellipse(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float, edge: float
) -> np.ndarray:
    """Soft filled ellipse; the distance is approximated in pixels along the smaller axis."""
    r = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return _soft((r - 1.0) * min(rx, ry), edge)


def _segment_distance(
    x: np.ndarray, y: np.ndarray, p: tuple[float, float], q: tuple[float, float]
) -> np.ndarray:
    """Pixel distance to the segment p-q."""
    px, py = p
    dx, dy = q[0] - px, q[1] - py
    t = np.clip(((x - px) * dx + (y - py) * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
    return np.hypot(x - px - t * dx, y - py - t * dy)


def _darken(img: np.ndarray, mask: np.ndarray, amount: float) -> None:
    img *= 1.0 - amount * mask


def render_face(face: FaceParams, size: int, eyes_closed: bool = False) -> np.ndarray:
    """The subject's neutral face as float32 (size, size) grey levels in 0..255.

    `eyes_closed` draws the lids shut; a blink is rendered by sweeping the lid edge between the
    open and the closed image, so the texture of both must be identical (same seed).
    """
    f = face
    s = float(size)
    edge = max(1.0, s / 128.0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    rng = np.random.default_rng(f.texture_seed)
    texture = smooth_noise(rng, size, (4, 8, 16, 32))
    pores = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 0.7)
    bg_noise = smooth_noise(rng, size, (3, 6))

    cx, cy, hw, hh = f.cx * s, f.cy * s, f.half_w * s, f.half_h * s
    # Face outline: an ellipse whose half-width shrinks towards the chin.
    below = np.clip((y - cy) / hh, 0.0, 1.0)
    rx = hw * (1.0 - f.jaw * below**2)
    r = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / hh) ** 2)
    face_mask = _soft((r - 1.0) * hw, edge * 1.5)
    shading = 1.0 + f.light[0] * (x - cx) / hw + f.light[1] * (y - cy) / hh
    # Cheeks and forehead catch light; the rim of the face falls off.
    shading *= 1.0 - 0.25 * np.clip(r - 0.6, 0.0, None) ** 2
    skin = f.skin * shading * (1.0 + f.texture_amp * texture + 0.025 * pores)
    background = f.background * (1.0 + 0.08 * bg_noise)
    img = background * (1.0 - face_mask) + skin * face_mask

    # Hair above a wavy hairline, inside a slightly larger outline.
    brow_y = (f.eye_y - f.brow_gap) * s
    hairline = brow_y - f.hairline * s + 0.02 * s * np.sin(x / s * 7.0 + f.texture_seed % 7)
    hair_mask = _soft(y - hairline, edge * 2) * _soft((r - 1.08) * hw, edge * 2)
    hair = f.hair * (1.0 + 0.3 * smooth_noise(rng, size, (24, 48)))
    img = img * (1.0 - hair_mask) + hair * hair_mask

    for sign in SIDES.values():
        _draw_eye_region(img, x, y, f, sign, s, edge, texture, eyes_closed)
    _draw_nose(img, x, y, f, s, edge)
    _draw_mouth(img, x, y, f, s, edge)
    for mx, my, mr, dark in f.moles:
        _darken(img, _ellipse(x, y, mx * s, my * s, mr * s, mr * s, edge), dark)
    return np.clip(img * 255.0, 0.0, 255.0).astype(np.float32)


def _draw_eye_region(
    img: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    f: FaceParams,
    sign: float,
    s: float,
    edge: float,
    texture: np.ndarray,
    closed: bool,
) -> None:
    ex, ey = (f.cx + sign * f.eye_dx) * s, f.eye_y * s
    ew, eh = f.eye_w * s, f.eye_h * s
    # Socket shadow, then the brow: a tapered arched band with hair-like texture.
    _darken(img, _ellipse(x, y, ex, ey - 0.3 * eh, ew * 1.5, eh * 2.2, edge * 6), 0.12)
    bx = ex + sign * 0.05 * f.brow_len * s
    by = (f.eye_y - f.brow_gap) * s
    half = f.brow_len * s
    t = (x - bx) / half  # -1..1 along the brow
    inner = np.clip(-sign * t, 0.0, 1.0)  # 1 at the inner end
    centre = by - f.brow_arch * s * (1.0 - t**2) + f.brow_tilt * s * inner
    thick = f.brow_thick * s * (1.0 - 0.5 * np.clip(sign * t, 0.0, 1.0))
    brow = _soft(np.abs(y - centre) - thick / 2, edge) * _soft(np.abs(t) - 1.0, edge / half * 4)
    _darken(img, brow, f.brow_dark * (0.85 + 0.15 * texture))
    if closed:
        lash = _soft(np.abs(y - ey - 0.3 * eh) - 0.12 * eh, edge)
        lash *= _ellipse(x, y, ex, ey, ew, eh * 2, edge)
        _darken(img, lash, 0.55)
        return
    opening = _ellipse(x, y, ex, ey, ew, eh, edge)
    sclera = 0.88
    img[:] = img * (1.0 - opening) + sclera * opening
    iris = _ellipse(x, y, ex, ey, f.iris_r * s, f.iris_r * s, edge) * opening
    _darken(img, iris, f.iris_dark)
    pupil = _ellipse(x, y, ex, ey, 0.4 * f.iris_r * s, 0.4 * f.iris_r * s, edge) * opening
    _darken(img, pupil, 0.8)
    # Upper lid line: the rim of the opening's upper half, drawn dark and thick.
    rim = _ellipse(x, y, ex, ey, ew * 1.08, eh * 1.35, edge) * (1.0 - opening)
    _darken(img, rim * _soft(y - ey, edge), 0.5)
    lower_lid = _ellipse(x, y, ex, ey + 0.2 * eh, ew * 1.05, eh * 1.25, edge) * (1.0 - opening)
    _darken(img, lower_lid * _soft(ey - y, edge), 0.15)


def _draw_nose(
    img: np.ndarray, x: np.ndarray, y: np.ndarray, f: FaceParams, s: float, edge: float
) -> None:
    cx, ny, nw = f.cx * s, f.nose_y * s, f.nose_w * s
    root_y = (f.eye_y + 0.04) * s
    for sign in SIDES.values():
        # Bridge side shadows, wing creases and the nostril.
        side = _segment_distance(x, y, (cx + sign * 0.35 * nw, root_y), (cx + sign * 0.6 * nw, ny))
        _darken(img, np.exp(-((side / (2.0 * edge)) ** 2)), 0.06)
        wing = _ellipse(x, y, cx + sign * 0.85 * nw, ny - 0.01 * s, 0.3 * nw, 0.38 * nw, edge)
        wing_rim = wing - _ellipse(
            x, y, cx + sign * 0.8 * nw, ny - 0.012 * s, 0.24 * nw, 0.3 * nw, edge
        )
        _darken(img, np.clip(wing_rim, 0, 1), 0.25)
        nostril = _ellipse(x, y, cx + sign * 0.4 * nw, ny, 0.22 * nw, 0.11 * nw, edge)
        _darken(img, nostril, 0.6)
        # Nasolabial fold: from the nose wing down past the mouth corner.
        start = (cx + sign * 1.05 * nw, ny - 0.02 * s)
        end = (cx + sign * (f.mouth_w + 0.035) * s, (f.mouth_y + 0.02) * s)
        fold = _segment_distance(x, y, start, end)
        _darken(img, np.exp(-((fold / (2.0 * edge)) ** 2)), f.fold)
    tip = _ellipse(x, y, cx, ny - 0.02 * s, 0.5 * nw, 0.35 * nw, edge * 4)
    img *= 1.0 + 0.06 * tip


def _draw_mouth(
    img: np.ndarray, x: np.ndarray, y: np.ndarray, f: FaceParams, s: float, edge: float
) -> None:
    cx, my, mw = f.cx * s, f.mouth_y * s, f.mouth_w * s
    t = np.clip((x - cx) / mw, -1.0, 1.0)
    inside = _soft(np.abs(x - cx) - mw, edge)
    line = my - f.mouth_curve * s * t**2
    lip = f.lip_thick * s
    # Upper lip with a cupid's bow, fuller lower lip, both thinning to the corners.
    upper_top = line - lip * (1.0 - t**2) * (0.8 + 0.25 * np.cos(np.pi * t * 3.0))
    lower_bottom = line + 1.3 * lip * (1.0 - t**2)
    lips = _soft(upper_top - y, edge) * _soft(y - lower_bottom, edge) * inside
    _darken(img, lips, f.lip_dark)
    mouth_line = _soft(np.abs(y - line) - 0.12 * lip - 0.3 * edge, edge) * inside
    _darken(img, mouth_line, 0.55)
    for sign in SIDES.values():
        corner_y = my - f.mouth_curve * s
        corner = _ellipse(x, y, cx + sign * mw, corner_y, 0.12 * mw, 0.1 * mw, edge)
        _darken(img, corner, 0.3)
    # Shadow under the lower lip.
    _darken(img, _ellipse(x, y, cx, my + 2.2 * lip, 0.6 * mw, 0.5 * lip, edge * 3), 0.15)
