"""Shared test set-up: offline mode, and where the real measurement data lives (if present)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from torch_threads import torch_threads

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MEGC2019 = SHARED_DATA / "megc2019"


@pytest.fixture
def megc2019_root() -> Path:
    """The real MEGC2019 development flow maps; skips visibly where ../shared is absent."""
    if not (MEGC2019 / "combined_3class_gt.csv").is_file():
        pytest.skip(f"real MEGC2019 data not found at {MEGC2019} (../shared/data is absent)")
    return MEGC2019


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models on a shared CPU run far faster on one torch thread than on several."""
    with torch_threads(1):
        yield
