"""A prediction in plain words: what `merkit predict` prints and `merkit serve` shows first."""

from __future__ import annotations

from typing import Any

from merkit.cli.predict import summary_line
from merkit.inference.wording import clock, plain


def result(**changes: Any) -> dict[str, Any]:
    """predict's JSON of a frame folder whose files count from 46, read at an assumed 200 fps."""
    spotting = {"window": 40, "fps": 200.0, "fps_assumed": True, "method": "flow",
                "follows": "optical-flow magnitude", "confidence": 0.8312, "eyes": "landmarks",
                "noise": 0.01234, "frames": [], "motion": []}  # fmt: skip
    return {
        "input": "clips/sub01",
        "frames": 300,
        "first_frame": 46,
        "fps": None,
        "face": {"box": [10, 20, 110, 120], "frame": 46},
        "onset": 56,
        "apex": 66,
        "offset": 96,
        "timing_sources": {"onset": "spotted", "apex": "spotted", "offset": "spotted"},
        "spotting": spotting,
        "probabilities": {"negative": 0.2, "positive": 0.04, "surprise": 0.76},
        "predicted": "surprise",
        "confidence": 0.76,
        **changes,
    }


def test_the_answer_first_in_words() -> None:
    words = plain(result())
    assert words["verdict"] == "surprise, probability 0.76"
    assert words["runner_up"] == "next: negative 0.20"
    # times count from the clip's first frame (46), not from a frame 0 the folder does not have
    assert words["when"] == (
        "Onset frame 56 (50 ms), apex frame 66 (100 ms), offset frame 96 (250 ms); "
        "the movement lasts 200 ms."
    )
    assert words["rate"] == "at an assumed 200 fps: a folder of frames states no rate"
    details = dict(words["details"])
    assert details["clip"] == "300 frames (1.50 s)"
    assert details["spotting confidence"].startswith("0.83 of 1: how far the apex's peak")
    assert details["spotting window"] == "40 frames (200 ms)"
    assert details["face"] == "found on frame 46: (10, 20) to (110, 120) px"
    assert "fps_assumed" not in str(words) and "0.01234" not in str(words)


def test_given_timing_has_no_spotting_to_tell() -> None:
    given = {"onset": "given", "apex": "given", "offset": "clip-end"}
    spotting = {**result()["spotting"], "fps": 30.0, "fps_assumed": False, "method": None}
    words = plain(result(timing_sources=given, spotting=spotting, first_frame=0, fps=30.0))
    assert words["when"].startswith("Onset frame 56 (1.87 s), apex frame 66 (2.20 s)")
    assert words["rate"] == ""
    details = dict(words["details"])
    assert details["timing"] == "onset: as given; apex: as given; offset: the clip's last frame"
    assert details["frame rate"] == "30 fps" and "spotting method" not in details


def test_predicts_line_per_clip() -> None:
    assert summary_line(result(picture={"path": "out/sub01.png"})) == (
        "sub01: surprise (probability 0.76); onset frame 56 (50 ms), apex frame 66 (100 ms), "
        "offset frame 96 (250 ms) (at an assumed 200 fps: a folder of frames states no rate); "
        "picture out/sub01.png"
    )
    assert [clock(s) for s in (0.0, 0.9994, 1.0, 62.5)] == ["0 ms", "999 ms", "1.00 s", "62.50 s"]
