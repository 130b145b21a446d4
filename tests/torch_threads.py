"""Test helper: run a block with a given number of torch threads (results depend on it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """CPU kernels split reductions by thread, so bit-level comparisons need equal counts; one
    thread also keeps tiny runs fast on a loaded machine (spinning OpenMP threads do not)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
