"""What the model looked at: attention maps, and the apex face with the flow and attention drawn,
above the spotting's motion curve with onset, apex and offset marked.

CABM-FMER re-weights spatial positions with CBAM's spatial attention; where a model has such
modules their (sigmoid) maps are used directly. Any other model gets input-gradient saliency:
|d logit_target / d input|, the largest over channels (and frames), normalised to 0..1.
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
INPUT_GRADIENT = "input-gradient"
PICTURE_SIDE = 384  # pixels of the written picture's side
ARROW_STEP = 8  # crop pixels between drawn flow arrows
ATTENTION_ALPHA = 0.5
CURVE_HEIGHT = 128  # pixels of the motion-curve strip under the face
CURVE_MARGIN = 16
MARK_COLOURS = ((80, 160, 255), (255, 80, 80), (80, 160, 255))  # onset, apex, offset (RGB)


@dataclass(frozen=True)
class MotionCurve:
    """The spotting's motion per frame and the frames it marks (frame numbers)."""

    frames: Sequence[int]
    motion: np.ndarray
    marks: tuple[int, int, int]  # onset, apex, offset
    label: str  # the method and its confidence


def _normalise(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def spatial_attention(model: nn.Module, x: torch.Tensor) -> np.ndarray | None:
    """Mean of the model's spatial-attention maps (H', W') for one input, or None if it has none."""
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
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    side = max(m.shape[-1] for m in maps)
    resized = [
        nn.functional.interpolate(m[:1, :1], size=(side, side), mode="bilinear") for m in maps
    ]
    return torch.cat(resized).mean(0)[0].cpu().numpy()


def input_saliency(model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """|d logit_target / d x| of one input, maximised over every axis but the last two."""
    x = x.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    model(x)[0, target].backward()
    grad = x.grad.abs()[0]  # type: ignore[union-attr]
    return grad.reshape(-1, *grad.shape[-2:]).amax(0).cpu().numpy()


def attention_map(model: nn.Module, x: np.ndarray, target: int) -> tuple[np.ndarray, str]:
    """A 0..1 map of where the model looked for one model input `x` (C, H, W)."""
    device = next(model.parameters(), torch.zeros(0)).device
    batch = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None].to(device)
    found = spatial_attention(model, batch)
    if found is not None:
        return _normalise(found), SPATIAL_ATTENTION
    return _normalise(input_saliency(model, batch, target)), INPUT_GRADIENT


def draw_flow(image: np.ndarray, flow: np.ndarray, scale: float) -> None:
    """Arrows of the flow field (crop pixels) on `image` (scaled by `scale`), in place.

    Micro-expression motion is a pixel or two, so arrows are stretched until the largest is
    about two grid steps long; motion under a tenth of the largest is not drawn.
    """
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    top = float(np.percentile(magnitude, 99.5))
    if top <= 1e-6:
        return
    gain = 2.0 * ARROW_STEP / top
    half = ARROW_STEP // 2
    for y in range(half, flow.shape[0], ARROW_STEP):
        for x in range(half, flow.shape[1], ARROW_STEP):
            dx, dy = flow[y, x]
            if np.hypot(dx, dy) < 0.1 * top:
                continue
            start = (round(x * scale), round(y * scale))
            end = (round((x + dx * gain) * scale), round((y + dy * gain) * scale))
            cv2.arrowedLine(image, start, end, (60, 255, 60), 1, cv2.LINE_AA, tipLength=0.3)


def draw_curve(curve: MotionCurve, width: int) -> np.ndarray:
    """RGB strip (CURVE_HEIGHT, width): the motion curve, onset/apex/offset as labelled lines."""
    strip = np.full((CURVE_HEIGHT, width, 3), 24, np.uint8)
    first, last = curve.frames[0], max(curve.frames[-1], curve.frames[0] + 1)
    top, bottom = CURVE_MARGIN + 12, CURVE_HEIGHT - CURVE_MARGIN

    def x_of(frame: float) -> int:
        return round(CURVE_MARGIN + (frame - first) / (last - first) * (width - 2 * CURVE_MARGIN))

    for (name, frame), colour in zip(
        zip(("onset", "apex", "offset"), curve.marks, strict=True), MARK_COLOURS, strict=True
    ):
        x = x_of(frame)
        cv2.line(strip, (x, top - 4), (x, bottom), colour, 1, cv2.LINE_AA)
        text = f"{name} {frame}"
        (size, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        left = int(np.clip(x - size // 2, 0, width - size))
        y = top - 6 if name == "apex" else bottom + 12
        cv2.putText(strip, text, (left, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    motion = np.asarray(curve.motion, np.float64)
    scale = float(motion.max()) if motion.size and motion.max() > 0 else 1.0
    ys = bottom - motion / scale * (bottom - top)
    points = np.array([[x_of(f), round(y)] for f, y in zip(curve.frames, ys, strict=True)])
    cv2.polylines(strip, [points.astype(np.int32)], False, (240, 240, 240), 1, cv2.LINE_AA)
    cv2.putText(strip, f"motion: {curve.label}", (CURVE_MARGIN, 12), cv2.FONT_HERSHEY_SIMPLEX,
                0.38, (200, 200, 200), 1, cv2.LINE_AA)  # fmt: skip
    return strip


def render_picture(
    face: np.ndarray,
    flow: np.ndarray,
    attention: np.ndarray | None,
    caption: str,
    curve: MotionCurve | None = None,
) -> np.ndarray:
    """RGB picture: the gray apex face, the attention as a heat overlay, flow arrows, a caption;
    with `curve`, the spotting's motion curve in a strip below."""
    scale = PICTURE_SIDE / face.shape[1]
    size = (PICTURE_SIDE, round(face.shape[0] * scale))
    gray = cv2.resize(face, size, interpolation=cv2.INTER_CUBIC)
    image = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB).astype(np.float32)
    if attention is not None:
        weight = cv2.resize(attention.astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
        weight = np.clip(weight, 0.0, 1.0)[..., None]
        heat = cv2.applyColorMap(np.uint8(255 * weight[..., 0]), cv2.COLORMAP_JET)[..., ::-1]
        image = image * (1 - ATTENTION_ALPHA * weight) + heat * (ATTENTION_ALPHA * weight)
    picture = np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))
    draw_flow(picture, flow, scale)
    cv2.putText(picture, caption, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    return picture if curve is None else np.vstack([picture, draw_curve(curve, picture.shape[1])])


def write_picture(path: Path, picture: np.ndarray) -> Path:
    """Write an RGB picture as PNG, atomically."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(picture[..., ::-1]))
    if not ok:
        raise DataLayoutError(f"{path}: could not encode the picture as PNG")
    return write_bytes_atomic(path, encoded.tobytes())
