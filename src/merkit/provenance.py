"""What produced a result: library versions recorded with runs and checkpoints."""

from __future__ import annotations

import platform

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
