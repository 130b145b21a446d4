"""The registered models' facts, kept beside the package so `merkit models` starts without torch.

`catalog.json` is a snapshot of what the model registry says and what a build of each model
counts (input, parameters and MFLOPs per sample at `CATALOG_CLASSES` classes, training kind,
presets, one-line summary). It is written by `python -m merkit.catalog` (`make catalog`), and a
test rebuilds it from the registry and fails when the shipped file differs, so it cannot drift.
Reading it needs only the standard library; computing it needs torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

CATALOG_FILE = "catalog.json"
# Parameter counts depend on the classes of the head: the table states them at this count (the
# MEGC2019 composite's 3: negative, positive, surprise).
CATALOG_CLASSES = 3


@dataclass(frozen=True)
class ModelFacts:
    """One model of the catalog, one row of `merkit models`."""

    name: str
    kind: str  # input kind: maps, apex, sequence or regions
    input: str  # e.g. "3x28x28", or "30x3x128x128" (frames x channels x H x W)
    params: int | None  # at CATALOG_CLASSES classes; None for closed-form models (data-sized)
    mflops: float  # forward, per sample
    training: str  # gradient, closed-form or average
    presets: tuple[str, ...]
    summary: str


def read_catalog() -> list[ModelFacts]:
    """The shipped catalog, in name order (standard library only: no torch)."""
    text = resources.files("merkit").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    return [ModelFacts(**{**row, "presets": tuple(row["presets"])}) for row in data["models"]]


def compute_catalog() -> list[ModelFacts]:
    """The catalog as the registry and a build of every model give it now (needs torch)."""
    from merkit.models import get_descriptor, list_models
    from merkit.models.profile import model_cost

    rows = []
    for name in list_models():
        descriptor = get_descriptor(name)
        params, flops = model_cost(name, CATALOG_CLASSES)
        rows.append(
            ModelFacts(
                name=name,
                kind=descriptor.input.kind,
                input=descriptor.input.label(),
                params=params,
                mflops=round(flops / 1e6, 3),
                training=descriptor.training,
                presets=tuple(descriptor.presets),
                summary=descriptor.summary,
            )
        )
    return rows


def catalog_document(rows: list[ModelFacts]) -> dict[str, Any]:
    """The JSON document of `rows`, as `catalog.json` holds it."""
    return {"num_classes": CATALOG_CLASSES, "models": [asdict(r) for r in rows]}


def write_catalog(path: Path | None = None) -> Path:
    """Recompute the catalog and write it (default: beside this module, in the source tree)."""
    from merkit.io import write_json_atomic

    target = path or Path(__file__).with_name(CATALOG_FILE)
    write_json_atomic(target, catalog_document(compute_catalog()))
    return target


if __name__ == "__main__":
    print(f"wrote {write_catalog()}")
