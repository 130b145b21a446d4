"""A synthetic population: what each action unit moves, which units code each emotion, and the
subjects (a procedural face plus habits) that `merkit.synthetic.clips` renders clips of.

Everything is drawn from `numpy.random.SeedSequence` streams keyed by (seed, subject, clip)
(`random_stream`), so a clip does not depend on which other clips were generated.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from merkit.errors import ConfigError
from merkit.synthetic.faces import FaceParams, landmarks, random_face, render_face

REFERENCE_SIZE = 128  # amplitudes and drifts in the config are pixels at this face size


@dataclass(frozen=True)
class Blob:
    """One Gaussian-windowed displacement: where it acts, which way, how wide.

    `anchor` names a landmark (sided ones get "_L"/"_R"), `vector` is (outward, down) relative to
    the action unit's amplitude, `sigma` is (x, y) in fractions of the image side.
    """

    anchor: str
    vector: tuple[float, float]
    sigma: tuple[float, float]


# Where each action unit moves the skin (FACS names in comments).
AU_MOTIONS: dict[str, tuple[Blob, ...]] = {
    "1": (Blob("brow_inner", (0.0, -1.0), (0.035, 0.035)),),  # inner brow raiser
    "2": (Blob("brow_outer", (0.0, -1.0), (0.04, 0.035)),),  # outer brow raiser
    "4": (Blob("brow_inner", (-0.6, 0.8), (0.045, 0.035)),),  # brow lowerer
    "5": (Blob("upper_lid", (0.0, -1.0), (0.04, 0.02)),),  # upper lid raiser
    "6": (Blob("cheek", (0.1, -0.9), (0.05, 0.04)),),  # cheek raiser
    "7": (Blob("lower_lid", (0.0, -0.8), (0.04, 0.02)),),  # lid tightener
    "9": (  # nose wrinkler: wings up, skin bunching at the root
        Blob("nose_wing", (0.0, -1.0), (0.03, 0.04)),
        Blob("nose_root", (0.0, 0.5), (0.03, 0.03)),
    ),
    "10": (Blob("upper_lip", (0.0, -1.0), (0.06, 0.025)),),  # upper lip raiser
    "12": (Blob("mouth_corner", (0.7, -0.7), (0.04, 0.035)),),  # lip corner puller
    "14": (Blob("mouth_corner", (-0.9, 0.1), (0.03, 0.03)),),  # dimpler
    "15": (Blob("mouth_corner", (0.0, 1.0), (0.035, 0.035)),),  # lip corner depressor
    "17": (Blob("chin", (0.0, -1.0), (0.07, 0.045)),),  # chin raiser
    "20": (Blob("mouth_corner", (1.0, 0.2), (0.035, 0.035)),),  # lip stretcher
    "24": (  # lip pressor
        Blob("upper_lip", (0.0, 0.6), (0.06, 0.02)),
        Blob("lower_lip", (0.0, -0.6), (0.06, 0.02)),
    ),
    "26": (  # jaw drop (slight)
        Blob("lower_lip", (0.0, 0.6), (0.08, 0.05)),
        Blob("chin", (0.0, 0.8), (0.1, 0.07)),
    ),
}

# Action-unit combinations that code each emotion (one is drawn per clip), after CASME II.
EMOTION_AUS: dict[str, tuple[tuple[str, ...], ...]] = {
    "happiness": (("6", "12"), ("12",), ("6", "12"), ("R12",), ("L12",)),
    "surprise": (("1", "2"), ("1", "2"), ("1", "2", "26"), ("2",)),
    "disgust": (("9",), ("4", "9"), ("9", "10"), ("4", "9")),
    "repression": (("14",), ("15",), ("17",), ("14", "24"), ("R14",), ("15", "17")),
    "others": (("4",), ("7",), ("4", "7"), ("L2",), ("R7",)),
    "fear": (("1", "2", "4", "20"), ("4", "20")),
    "sadness": (("1", "4", "15"), ("1", "4"), ("15",)),
}
# Relative strength of each unit at the same clip amplitude (jaw drops and smiles travel further).
AU_GAIN: dict[str, float] = {"12": 1.2, "26": 1.3, "5": 0.7, "6": 0.8, "7": 0.7, "17": 0.9}
TIC_AUS = ("7", "L12", "R2", "17", "R14")


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. Pixel quantities are at a 128-pixel face and scale with `size`."""

    n_subjects: int = 12
    clips_per_subject: int = 10
    classes: tuple[str, ...] = ("happiness", "surprise", "disgust", "repression", "others")
    size: int = 128
    n_frames: int = 30  # nominal expression length (onset to offset); varies by +-length_jitter
    length_jitter: float = 0.2
    # Neutral frames around the expression, as a share of its length, split at random: 0 makes
    # clips that span onset..offset (CASME II's cropped release), 1 clips twice as long with the
    # expression anywhere inside (a recording, SAMM-like); the sheet keeps the true onset/offset.
    context: float = 0.0
    fps: float = 200.0  # nominal: the frame rate the clips stand for (CASME II's)
    amplitude_px: tuple[float, float] = (0.8, 2.2)  # peak action-unit displacement
    drift_px: float = 1.0  # largest head translation across a clip (its speed: / clip length)
    drift_deg: float = 0.4  # largest head rotation across a clip
    noise_std: float = 2.0  # sensor noise, grey levels
    illumination: float = 0.03  # largest relative brightness change across a clip
    blink_rate: float = 1.0  # expected blinks per 100 frames
    tic_amplitude: float = 0.35  # subjects' habitual twitches, relative to the clip amplitude
    missing_apex: int = 2  # rows whose ApexFrame is written as "/", like the real sheet
    jpeg_quality: int = 95
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [c for c in self.classes if c not in EMOTION_AUS]
        if unknown or not self.classes:
            raise ConfigError(
                f"synthetic classes {unknown or '()'} unknown; choose from {', '.join(EMOTION_AUS)}"
            )
        if self.size < 48 or self.size % 2:
            raise ConfigError(f"synthetic size {self.size} must be an even number >= 48")
        if self.n_frames < 8:
            raise ConfigError(f"synthetic n_frames {self.n_frames} must be at least 8")
        if self.context < 0:
            raise ConfigError(f"synthetic context {self.context} must be >= 0")
        if self.n_subjects < 1 or self.clips_per_subject < 1:
            raise ConfigError("synthetic n_subjects and clips_per_subject must be at least 1")
        low, high = self.amplitude_px
        if not 0 < low <= high:
            raise ConfigError(f"synthetic amplitude_px {self.amplitude_px} must be 0 < low <= high")

    @property
    def scale(self) -> float:
        return self.size / REFERENCE_SIZE

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


@dataclass
class SyntheticSubject:
    """A subject's face, rendered once, and the habits that make its clips its own."""

    index: int
    face: FaceParams
    neutral: np.ndarray  # float32 (size, size)
    closed: np.ndarray  # the same face with the eyes shut, for blinks
    anchors: dict[str, np.ndarray] = field(repr=False)
    expressiveness: float  # scales every action unit
    asymmetry: float  # > 0: the subject's left side moves more
    drift_gain: float
    tic: str  # an action unit this subject twitches now and then, whatever the emotion
    tic_prob: float


def random_stream(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(key)))


def make_subject(index: int, config: SyntheticConfig) -> SyntheticSubject:
    """Subject `index` of the population that `config.seed` defines."""
    rng = random_stream(config.seed, 1, index)
    face = random_face(rng)
    return SyntheticSubject(
        index=index,
        face=face,
        neutral=render_face(face, config.size),
        closed=render_face(face, config.size, eyes_closed=True),
        anchors=landmarks(face, config.size),
        expressiveness=float(rng.uniform(0.8, 1.2)),
        asymmetry=float(rng.uniform(-0.3, 0.3)),
        drift_gain=float(rng.uniform(0.4, 1.0)),
        tic=str(rng.choice(TIC_AUS)),
        tic_prob=float(rng.uniform(0.0, 0.4)),
    )


def parse_au(code: str) -> tuple[str, str | None]:
    """("12", None) for "12", ("12", "R") for "R12": the unit and its side, if one-sided."""
    match = re.fullmatch(r"([LR]?)(\d+)", code)
    if match is None or match.group(2) not in AU_MOTIONS:
        raise ConfigError(
            f"action unit {code!r} has no synthetic motion; known: {list(AU_MOTIONS)}"
        )
    return match.group(2), match.group(1) or None
