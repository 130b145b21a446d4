"""What the predict page shows of one analysed clip: the result in plain words, the aligned face
of every frame (for the slider), the motion curve, and pictures of the apex face, the flow, the
model input and (for a model that has some) the spatial attention, drawn with
`merkit.inference.picture` as `merkit predict --picture` draws its own, each with a caption that
says what it shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from merkit.errors import DataLayoutError
from merkit.inference.picture import SPATIAL_ATTENTION, arrow_scale, render_picture
from merkit.inference.predictor import Analysis, Predictor
from merkit.inference.wording import plain
from merkit.models.inputs import inference_input
from merkit.preprocess.flow import compute_flow, minmax_scale
from merkit.preprocess.spotting import motion_profile

JPEG_QUALITY = 90
INPUT_SIDE = 128  # pixels per channel of the model-input picture
INPUT_CHANNELS = ("u", "v", "strain")
CURVE_FROM_PREDICT = "how much the face moves at each frame, as the spotting measured it"
CURVE_FROM_ONSET = "how much each frame differs from the onset frame"
UNIFORM = 0.1  # attention weights spread less than this are said to single out no region


@dataclass
class Views:
    """Encoded images (served as they are) and the curve the page draws."""

    frames: list[bytes]  # JPEG of the aligned face of each frame, in clip order
    numbers: list[int]  # the frame number of each
    curve: list[float | None]  # None where the curve has no value
    curve_source: str
    images: dict[str, bytes] = field(default_factory=dict)  # name -> PNG
    attention: str | None = None  # the attention map shown (None: the model has none)
    words: dict[str, Any] = field(default_factory=dict)  # the result in plain words
    captions: dict[str, str] = field(default_factory=dict)  # image name -> what it shows

    def summary(self) -> dict[str, Any]:
        """What the page needs to lay the views out (the images themselves are fetched)."""
        return {
            "numbers": self.numbers,
            "curve": self.curve,
            "curve_source": self.curve_source,
            "images": sorted(self.images),
            "attention": self.attention,
            "words": self.words,
            "captions": self.captions,
        }


def _encode(extension: str, image: np.ndarray, *params: int) -> bytes:
    bgr = image[..., ::-1] if image.ndim == 3 else image
    ok, data = cv2.imencode(extension, np.ascontiguousarray(bgr), list(params))
    if not ok:
        raise DataLayoutError(f"could not encode a {extension} picture")
    return data.tobytes()


def png(image: np.ndarray) -> bytes:
    return _encode(".png", image)


def aligned_faces(analysis: Analysis) -> np.ndarray:
    """Every frame of the clip through the face alignment predict used: (T, S, S) uint8 gray."""
    frames = analysis.clip.frames.read()
    if frames.ndim == 4:
        frames = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    return analysis.alignment.apply_all(frames)


def motion_curve(
    result: dict[str, Any], faces: np.ndarray, numbers: list[int], onset: int
) -> tuple[list[float | None], str]:
    """The motion value of each frame (None: not measured) to draw under the onset/apex/offset
    marks, and what it is.

    predict's own spotting curve when its JSON carries one (`spotting.frames` with
    `spotting.motion`, one value per listed frame number: whenever it spotted the apex);
    otherwise (onset and apex given) each frame's difference from the onset frame.
    """
    spotting = result.get("spotting", {})
    frames, motion = spotting.get("frames"), spotting.get("motion")
    if frames and isinstance(motion, list) and len(frames) == len(motion):
        by_frame = dict(zip(frames, motion, strict=True))
        values = [by_frame.get(n) for n in numbers]
        return [None if v is None else float(v) for v in values], CURVE_FROM_PREDICT
    curve = motion_profile(faces, reference=onset)
    return [round(float(v), 4) for v in curve], CURVE_FROM_ONSET


def input_picture(x: np.ndarray) -> np.ndarray:
    """The flow model's input, channel by channel (u, v, strain), as heat maps with labels."""
    scaled = minmax_scale(np.asarray(x, np.float32))
    tiles = []
    for name, channel in zip(INPUT_CHANNELS, scaled, strict=True):
        big = cv2.resize(channel, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_NEAREST)
        tile = cv2.applyColorMap(np.uint8(255 * big), cv2.COLORMAP_VIRIDIS)[..., ::-1].copy()
        cv2.putText(tile, name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2)
        tiles.append(tile)
    gap = np.full((INPUT_SIDE, 4, 3), 255, np.uint8)
    return np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1)


def flow_caption(flow: np.ndarray, onset: int, apex: int) -> str:
    """What the flow picture's arrows mean, with their scale."""
    top, gain = arrow_scale(flow)
    if gain == 0:
        return f"No motion between the onset (frame {onset}) and the apex (frame {apex})."
    return (
        f"Motion from the onset (frame {onset}) to the apex (frame {apex}): each arrow points "
        f"where the skin moved, drawn {gain:.0f} times longer than the motion; the largest "
        f"moves {top:.1f} px of the {flow.shape[1]}-px face."
    )


def attention_caption(weights: np.ndarray) -> str:
    """What the attention overlay shows, on its own 0..1 scale, and how selective it is."""
    low, high = float(weights.min()), float(weights.max())
    spread = (
        "nearly the same everywhere: it singles out no region"
        if high - low < UNIFORM
        else "the red places weigh most"
    )
    return (
        "Where the network's spatial attention (CBAM) lets the motion through, the same for "
        f"every class: weights from {low:.2f} to {high:.2f} on its scale from 0 (blue, "
        f"suppressed) to 1 (red, kept), {spread}."
    )


def build_views(predictor: Predictor, analysis: Analysis) -> Views:
    """Frames, curve, words and pictures of one analysed clip."""
    timing, result = analysis.timing, analysis.result
    faces = aligned_faces(analysis)
    numbers = list(analysis.clip.numbers)
    curve, source = motion_curve(result, faces, numbers, timing.onset)
    apex_face = faces[timing.apex]
    no_flow = np.zeros((*apex_face.shape, 2), np.float32)
    flow = compute_flow(faces[timing.onset], apex_face, predictor.config.flow)
    model_x = inference_input(predictor.meta.model, analysis.x[None])[0]
    found = predictor.backend.attention(model_x)
    onset, apex = result["onset"], result["apex"]
    images = {
        "face": png(render_picture(apex_face, no_flow, None, f"apex frame {apex}")),
        "flow": png(render_picture(apex_face, flow, None, f"flow {onset} -> {apex}")),
    }
    captions = {
        "face": f"The aligned face at the apex (frame {apex}).",
        "flow": flow_caption(flow, onset, apex),
    }
    if found is not None:
        images["attention"] = png(render_picture(apex_face, no_flow, found, "attention"))
        captions["attention"] = attention_caption(found)
    if predictor.config.output == "maps":
        images["input"] = png(input_picture(analysis.x))
    frames = [_encode(".jpg", face, cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY) for face in faces]
    return Views(
        frames=frames,
        numbers=numbers,
        curve=curve,
        curve_source=source,
        images=images,
        attention=None if found is None else SPATIAL_ATTENTION,
        words=plain(result),
        captions=captions,
    )
