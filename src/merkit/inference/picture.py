"""What the model looked at, and the picture `merkit predict --picture` writes: the apex face
with the flow arrows and the attention drawn, above the spotting's motion curve with onset, apex
and offset marked.

Attention is shown only where the model has some: CBAM's spatial attention (CABM-FMER, and the
network inside `recommended`) multiplies every position of its features by a weight in 0..1, and
those (sigmoid) weights are drawn as they are, on their own 0..1 scale, so a map that weighs the
whole face alike looks alike. A model without such a module gets no map. An input-gradient
saliency could be drawn for any network, but on a 28x28 min-max-scaled motion map it follows the
map's noise more than the face, says nothing of the SVMs in an average, and, normalised to 0..1
to fill the colour scale, paints some region hot on every clip: read as "where the model looked"
it would mislead, so merkit does not draw one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from merkit.errors import DataLayoutError
from merkit.io import write_bytes_atomic
from merkit.models.blocks import SpatialAttention

SPATIAL_ATTENTION = "spatial-attention"
PICTURE_SIDE = 384  # pixels of the written picture's side
ARROW_STEP = 8  # crop pixels between drawn flow arrows
ARROW_REACH = 2.0  # grid steps the longest arrow is stretched to
ATTENTION_ALPHA = 0.45  # the same everywhere, so the colour bar reads true
FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_SCALE = 0.35  # font scale of the curve's labels
LABEL_ROW = 11  # pixels between rows of labels
LABEL_GAP = 6  # pixels kept free between two labels on one row
CURVE_MARGIN = 16
CURVE_TOP = CURVE_MARGIN + 12  # the curve's highest point; the apex label sits above it
CURVE_HEIGHT = CURVE_TOP + 88 + 2 * LABEL_ROW + 6  # plot, then two rows of labels below it
# RGB on the dark strip, in the order the marks come
MARK_COLOURS = {"onset": (90, 200, 120), "apex": (255, 90, 90), "offset": (235, 170, 60)}


@dataclass(frozen=True)
class MotionCurve:
    """The spotting's motion per frame and the frames it marks (frame numbers)."""

    frames: Sequence[int]
    motion: np.ndarray
    marks: tuple[int, int, int]  # onset, apex, offset
    method: str  # the spotting method
    confidence: float  # the spotting's confidence in its apex (not the class's probability)

    @property
    def title(self) -> str:
        """What the strip shows, its confidence named for what it is."""
        return f"motion ({self.method}); spotting confidence {self.confidence:.2f}"


def attention_map(model: nn.Module, x: np.ndarray) -> np.ndarray | None:
    """The mean of the model's spatial-attention weights (H', W'), each in 0..1, for one model
    input `x` (C, H, W); None for a model without spatial attention. The weights do not depend
    on the class: they are what the network let through before it decided."""
    device = next(model.parameters(), torch.zeros(0)).device
    batch = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None].to(device)
    maps: list[torch.Tensor] = []
    hooks = [
        module.conv.register_forward_hook(lambda _m, _i, out: maps.append(torch.sigmoid(out)))
        for module in model.modules()
        if isinstance(module, SpatialAttention)
    ]
    if not hooks:
        return None
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    side = max(m.shape[-1] for m in maps)
    resized = [
        nn.functional.interpolate(m[:1, :1], size=(side, side), mode="bilinear") for m in maps
    ]
    return torch.cat(resized).mean(0)[0].cpu().numpy()


def arrow_scale(flow: np.ndarray) -> tuple[float, float]:
    """(the largest motion drawn, in pixels; how many times longer than the motion the arrows
    are drawn). Micro-expression motion is a pixel or two, so arrows are stretched until the
    largest (the 99.5th percentile, not a stray pixel) is ARROW_REACH grid steps long; (0, 0)
    where nothing moves."""
    top = float(np.percentile(np.hypot(flow[..., 0], flow[..., 1]), 99.5))
    return (top, ARROW_REACH * ARROW_STEP / top) if top > 1e-6 else (0.0, 0.0)


def draw_flow(image: np.ndarray, flow: np.ndarray, scale: float) -> None:
    """Arrows of the flow field (crop pixels) on `image` (scaled by `scale`), in place, stretched
    as `arrow_scale` says; motion under a tenth of the largest is not drawn."""
    top, gain = arrow_scale(flow)
    half = ARROW_STEP // 2
    for y in range(half, flow.shape[0], ARROW_STEP):
        for x in range(half, flow.shape[1], ARROW_STEP):
            dx, dy = flow[y, x]
            if gain == 0 or np.hypot(dx, dy) < 0.1 * top:
                continue
            start = (round(x * scale), round(y * scale))
            end = (round((x + dx * gain) * scale), round((y + dy * gain) * scale))
            cv2.arrowedLine(image, start, end, (60, 255, 60), 1, cv2.LINE_AA, tipLength=0.3)


def _text(
    image: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour: Sequence[int]
) -> None:
    """Text with a dark outline: readable on a light face as on a dark strip."""
    for ink, thickness in (((0, 0, 0), 3), (tuple(colour), 1)):
        cv2.putText(image, text, origin, FONT, scale, ink, thickness, cv2.LINE_AA)


def mark_labels(marks: Sequence[tuple[str, int, int]], width: int) -> list[tuple[str, int, int]]:
    """(text, left, row) of the label of each mark (name, frame number, x of its line): centred
    on its line and inside the strip; the apex's above the plot (row 0), onset's and offset's
    below it, each on the first row (1, then 2) where it overlaps no other label, so that the
    labels never overlap however short the episode."""
    placed: list[tuple[str, int, int]] = []
    taken: list[tuple[int, int, int]] = []  # row, left, right
    for name, frame, x in marks:
        text = f"{name} {frame}"
        (size, _), _ = cv2.getTextSize(text, FONT, LABEL_SCALE, 1)
        left = int(np.clip(x - size // 2, 0, width - size))
        rows = (0,) if name == "apex" else (1, 2)
        row = next(
            r
            for r in rows
            if all(
                r != other or left >= end + LABEL_GAP or left + size + LABEL_GAP <= start
                for other, start, end in taken
            )
        )
        taken.append((row, left, left + size))
        placed.append((text, left, row))
    return placed


def draw_curve(curve: MotionCurve, width: int) -> np.ndarray:
    """RGB strip (CURVE_HEIGHT, width): the motion curve, onset/apex/offset as labelled lines,
    and its title naming the spotting method and the spotting's confidence."""
    strip = np.full((CURVE_HEIGHT, width, 3), 24, np.uint8)
    first, last = curve.frames[0], max(curve.frames[-1], curve.frames[0] + 1)
    bottom = CURVE_HEIGHT - 2 * LABEL_ROW - 6

    def x_of(frame: float) -> int:
        return round(CURVE_MARGIN + (frame - first) / (last - first) * (width - 2 * CURVE_MARGIN))

    marks = list(zip(MARK_COLOURS, curve.marks, strict=True))
    for name, frame in marks:
        x = x_of(frame)
        cv2.line(strip, (x, CURVE_TOP - 4), (x, bottom), MARK_COLOURS[name], 1, cv2.LINE_AA)
    labels = mark_labels([(name, frame, x_of(frame)) for name, frame in marks], width)
    for (name, _), (text, left, row) in zip(marks, labels, strict=True):
        y = CURVE_TOP - 6 if row == 0 else bottom + row * LABEL_ROW
        _text(strip, text, (left, y), LABEL_SCALE, MARK_COLOURS[name])
    motion = np.asarray(curve.motion, np.float64)
    scale = float(motion.max()) if motion.size and motion.max() > 0 else 1.0
    ys = bottom - motion / scale * (bottom - CURVE_TOP)
    points = np.array([[x_of(f), round(y)] for f, y in zip(curve.frames, ys, strict=True)])
    cv2.polylines(strip, [points.astype(np.int32)], False, (240, 240, 240), 1, cv2.LINE_AA)
    _text(strip, curve.title, (CURVE_MARGIN, 12), 0.38, (200, 200, 200))
    return strip


def _heat(weight: np.ndarray) -> np.ndarray:
    """RGB colours of 0..1 values on the attention's colour scale (blue 0 .. red 1)."""
    return cv2.applyColorMap(np.uint8(np.rint(255 * weight)), cv2.COLORMAP_JET)[..., ::-1]


def draw_colour_bar(image: np.ndarray) -> None:
    """The attention's colour scale in the picture's lower left corner, in place: its ends 0 and
    1, and what it measures."""
    height, width = image.shape[:2]
    left, top, length, thick = 10, height - 22, min(140, width // 3), 8
    image[top : top + thick, left : left + length] = _heat(np.linspace(0, 1, length)[None])
    cv2.rectangle(image, (left - 1, top - 1), (left + length, top + thick), (0, 0, 0), 1)
    _text(image, "attention weight", (left, top - 5), 0.4, (255, 255, 255))
    _text(image, "0", (left, top + thick + 12), 0.4, (255, 255, 255))
    _text(image, "1", (left + length - 7, top + thick + 12), 0.4, (255, 255, 255))


def render_picture(
    face: np.ndarray,
    flow: np.ndarray,
    attention: np.ndarray | None,
    caption: str,
    curve: MotionCurve | None = None,
) -> np.ndarray:
    """RGB picture: the gray apex face, the attention weights as a heat overlay with their colour
    scale, flow arrows, a caption (one line per line of `caption`); with `curve`, the spotting's
    motion curve in a strip below."""
    scale = PICTURE_SIDE / face.shape[1]
    size = (PICTURE_SIDE, round(face.shape[0] * scale))
    gray = cv2.resize(face, size, interpolation=cv2.INTER_CUBIC)
    picture = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    if attention is not None:
        weight = cv2.resize(attention.astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
        heat = _heat(np.clip(weight, 0.0, 1.0))
        picture = cv2.addWeighted(picture, 1 - ATTENTION_ALPHA, heat, ATTENTION_ALPHA, 0.0)
        draw_colour_bar(picture)
    draw_flow(picture, flow, scale)
    for row, line in enumerate(caption.splitlines()):
        _text(picture, line, (8, 22 + 22 * row), 0.55, (255, 255, 255))
    return picture if curve is None else np.vstack([picture, draw_curve(curve, picture.shape[1])])


def write_picture(path: Path, picture: np.ndarray) -> Path:
    """Write an RGB picture as PNG, atomically."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(picture[..., ::-1]))
    if not ok:
        raise DataLayoutError(f"{path}: could not encode the picture as PNG")
    return write_bytes_atomic(path, encoded.tobytes())
