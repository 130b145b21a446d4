"""What produced a result, and when: library versions and times recorded with runs and
checkpoints."""

from __future__ import annotations

import platform
from datetime import UTC, datetime

import numpy as np

import merkit


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that results depend on (saved for reproduction)."""
    import torch  # imported here: reading provenance should not cost a torch import up front

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "merkit": merkit.__version__,
    }


def timestamp() -> str:
    """Now, as runs and checkpoints record it: ISO 8601 in UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
