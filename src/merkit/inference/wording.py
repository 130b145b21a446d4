"""A prediction in plain words, for a person rather than a program: the class and how sure, when
the movement happens (frames, and time from the clip's first frame), and how that was found.

`merkit predict` prints the first two as its line per clip; `merkit serve` shows them at the top
of a result, with `details` behind a disclosure. Everything is read from predict's JSON, so the
words cannot say something the JSON does not.
"""

from __future__ import annotations

from typing import Any

MOMENTS = ("onset", "apex", "offset")
# timing_sources values: where each of onset, apex and offset came from
SOURCES = {
    "given": "as given",
    "spotted": "spotted",
    "clip-start": "the clip's first frame",
    "clip-end": "the clip's last frame",
    "onset+window": "the onset plus the spotting window",
}
EYES = {
    "landmarks": "found from facial landmarks (their corners); their movement counts, except in "
    "blinks",
    "eye-detector": "found by an eye detector; their movement counts, except in blinks",
    "assumed": "not found, assumed where a face crop holds them; their movement counts, "
    "except in blinks",
    "none": "not found",
}
# How the face crop was placed (`merkit.preprocess.face.CROPS`); results without it: landmarks.
FACES = {
    "landmarks": "found on frame {frame}: {box}",
    "cut-to-frame": "found on frame {frame}, larger than the frame: the crop is the part of it "
    "the frame shows, {box}",
    "whole-frame": "none found on frame {frame}, but the frame shows a pair of eyes: the whole "
    "frame is taken as the face, {box}",
    "given": "the frames are face crops already (frame {frame}: {box})",
}


def clock(seconds: float) -> str:
    """A time as a person reads it: milliseconds under a second, else seconds."""
    return f"{1000 * seconds:.0f} ms" if abs(seconds) < 1 else f"{seconds:.2f} s"


def frame_rate(result: dict[str, Any]) -> tuple[float, bool]:
    """The frame rate times are counted at, and whether it was assumed (a folder of frames
    states none)."""
    spotting = result["spotting"]
    return float(spotting["fps"]), bool(spotting["fps_assumed"])


def assumed_rate(result: dict[str, Any]) -> str:
    """ "" or, when the frame rate was assumed, the words that say so."""
    fps, assumed = frame_rate(result)
    return f"at an assumed {fps:g} fps: a folder of frames states no rate" if assumed else ""


def verdict(result: dict[str, Any]) -> str:
    """The class and its probability: "surprise, probability 0.76"."""
    return f"{result['predicted']}, probability {result['confidence']:.2f}"


def runner_up(result: dict[str, Any]) -> str:
    """The second most probable class and its probability ("" for a one-class model)."""
    ranked = sorted(result["probabilities"].items(), key=lambda item: -item[1])
    return f"next: {ranked[1][0]} {ranked[1][1]:.2f}" if len(ranked) > 1 else ""


def moments(result: dict[str, Any]) -> str:
    """Onset, apex and offset as frames and times into the clip: "onset frame 30 (150 ms),
    apex frame 45 (225 ms), offset frame 70 (350 ms)"."""
    fps, _ = frame_rate(result)
    first = result["first_frame"]
    return ", ".join(
        f"{key} frame {result[key]} ({clock((result[key] - first) / fps)})" for key in MOMENTS
    )


def duration(result: dict[str, Any]) -> str:
    """How long the movement lasts, onset to offset."""
    fps, _ = frame_rate(result)
    return f"the movement lasts {clock((result['offset'] - result['onset']) / fps)}"


def details(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, in words) of how the answer was found: where each moment came from, the frame
    rate, the clip, the spotting (method, confidence, eyes, noise, window) and the face."""
    fps, assumed = frame_rate(result)
    sources = result["timing_sources"]
    timing = (f"{key}: {SOURCES.get(sources[key], sources[key])}" for key in MOMENTS)
    items = [
        ("timing", "; ".join(timing)),
        ("frame rate", f"{fps:g} fps" + (f" ({assumed_rate(result)})" if assumed else "")),
        ("clip", f"{result['frames']} frames ({clock(result['frames'] / fps)})"),
    ]
    spotting = result["spotting"]
    if spotting.get("method"):
        window = spotting["window"]
        items += [
            ("spotting method", f"{spotting['method']}: {spotting['follows']}"),
            (
                "spotting confidence",
                f"{spotting['confidence']:.2f} of 1: how far the apex's peak rises above the "
                "motion curve's noise and its other peaks (the spotting's, not the class's)",
            ),
            ("eye regions", EYES.get(spotting["eyes"], spotting["eyes"])),
            ("motion noise", f"{spotting['noise']:.3g}: the curve's level where nothing moves"),
            ("spotting window", f"{window} frames ({clock(window / fps)})"),
        ]
    face = result["face"]
    left, top, right, bottom = face["box"]
    box = f"({left}, {top}) to ({right}, {bottom}) px"
    said = FACES[face.get("crop", "landmarks")].format(frame=face["frame"], box=box)
    return [*items, ("face", said)]


def plain(result: dict[str, Any]) -> dict[str, Any]:
    """The words of one result, for a page to lay out."""
    sentence = moments(result)
    return {
        "verdict": verdict(result),
        "runner_up": runner_up(result),
        "when": f"{sentence[:1].upper()}{sentence[1:]}; {duration(result)}.",
        "rate": assumed_rate(result),
        "details": details(result),
    }
