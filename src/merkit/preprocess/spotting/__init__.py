"""Apex spotting: where in a clip the facial movement peaks, how clear that peak is, and when it
starts and ends. One home, small files named after what they do:

- `registration`: every frame registered onto the clip's reference face (drift removed);
- `curve`: thumbnails, and the motion curve, both-sided at every reach;
- `eyes`, `blinks`: where the eyes are, and which frames blink (left out of the eye blocks);
- `peaks`: smoothing, the apex, its confidence;
- `methods`: the methods by name and `spot`; `baselines`: the methods it is measured against;
- `episode`: onset and offset (`locate`, used by `merkit predict` and `merkit spot`).

Every span of time is set in milliseconds and turned into frames at the clip's rate.
"""

from merkit.preprocess.spotting.baselines import motion_profile
from merkit.preprocess.spotting.episode import (
    Timing,
    check_order,
    default_window,
    fit_movement,
    given_timing,
    locate,
)
from merkit.preprocess.spotting.eyes import Eyes, find_eyes
from merkit.preprocess.spotting.methods import (
    DEFAULT_FPS,
    METHODS,
    Spot,
    check_fps,
    get_method,
    spot,
)

__all__ = [
    "DEFAULT_FPS",
    "METHODS",
    "Eyes",
    "Spot",
    "Timing",
    "check_fps",
    "check_order",
    "default_window",
    "find_eyes",
    "fit_movement",
    "get_method",
    "given_timing",
    "locate",
    "motion_profile",
    "spot",
]
