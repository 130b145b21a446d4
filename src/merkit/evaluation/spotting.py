"""How well apex spotting agrees with annotated apexes: per-clip errors, pooled figures, a report.

Figures are pooled over all scored clips, per spotting method (and per source dataset): the mean
absolute apex error in frames and in milliseconds (each clip at its own frame rate), the median,
the share within +-3 frames and within 10 % of the clip's length, and the share spotted on the
clip's first or last frame (where a drift-prone spotter ends up). A run folder holds
`spotting.csv` (one row per clip and method), `metrics.json`, `report.md` and `report.html`, each
written atomically; it is never a folder that holds other work (`claim_spotting_folder`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from merkit.evaluation.document import Document, Facts, Heading, Table, to_html, to_markdown
from merkit.evaluation.run_folder import HTML_FILE, METRICS_FILE, REPORT_FILE, claim_folder
from merkit.io import write_json_atomic, write_text_atomic

SPOTTING_FILE = "spotting.csv"
OUTPUT_FILES = (SPOTTING_FILE, METRICS_FILE, REPORT_FILE, HTML_FILE)
NEAR_FRAMES = 3  # "within +-3 frames"
NEAR_SHARE = 0.1  # "within 10 % of the clip's length"
SURE = 0.5  # confidence at or above which a spot counts as sure
WORST_ROWS = 10


@dataclass(frozen=True)
class SpottedClip:
    """One clip's spotted apex beside its annotated one (frame numbers, as the dataset writes)."""

    dataset: str
    subject: str
    sample: str
    method: str
    first: int  # the first and last frame spotting looked at
    last: int
    fps: float
    annotated: int
    spotted: int
    confidence: float
    face: str = ""  # how the face crop was placed (`merkit.preprocess.face.CROPS`)

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    @property
    def error(self) -> int:
        return self.spotted - self.annotated

    @property
    def on_edge(self) -> bool:
        return self.spotted in (self.first, self.last)


def _figures(rows: Sequence[SpottedClip]) -> dict[str, Any]:
    errors = np.abs([r.error for r in rows]).astype(np.float64)
    ms = errors / np.array([r.fps for r in rows]) * 1000.0
    near = errors <= NEAR_FRAMES
    sure = np.array([r.confidence >= SURE for r in rows])
    return {
        "n": len(rows),
        "mean_abs_error_frames": round(float(errors.mean()), 3),
        "mean_abs_error_ms": round(float(ms.mean()), 2),
        "median_abs_error_frames": float(np.median(errors)),
        "within_3_frames": round(float(near.mean()), 4),
        "within_10pct_of_clip": round(
            float(np.mean([abs(r.error) <= NEAR_SHARE * r.length for r in rows])), 4
        ),
        "on_clip_edge": round(float(np.mean([r.on_edge for r in rows])), 4),
        "mean_confidence": round(float(np.mean([r.confidence for r in rows])), 4),
        "sure_share": round(float(sure.mean()), 4),
        "within_3_frames_when_sure": round(float(near[sure].mean()), 4) if sure.any() else None,
    }


def spotting_metrics(rows: Sequence[SpottedClip]) -> dict[str, Any]:
    """{method: {"overall": figures, "per_dataset": {dataset: figures}}}, methods in first-seen
    order; see the module docstring for the figures."""
    out: dict[str, Any] = {}
    for method in dict.fromkeys(r.method for r in rows):
        mine = [r for r in rows if r.method == method]
        datasets = dict.fromkeys(r.dataset for r in mine)
        out[method] = {
            "overall": _figures(mine),
            "per_dataset": {d: _figures([r for r in mine if r.dataset == d]) for d in datasets},
        }
    return out


def spotting_csv(rows: Sequence[SpottedClip]) -> str:
    """One line per clip and method, with the error in frames and ms and the edge flag."""
    buffer = io.StringIO()
    names = [f.name for f in fields(SpottedClip)]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*names, "error_frames", "error_ms", "on_edge"])
    for r in rows:
        values = asdict(r)
        error_ms = round(r.error / r.fps * 1000.0, 2)
        writer.writerow([*(values[n] for n in names), r.error, error_ms, int(r.on_edge)])
    return buffer.getvalue()


# (report heading, terminal heading, metrics key)
FIGURE_COLUMNS = (
    ("n", "n", "n"),
    ("mean abs error (frames)", "MAE fr", "mean_abs_error_frames"),
    ("mean abs error (ms)", "MAE ms", "mean_abs_error_ms"),
    ("median abs error (frames)", "median", "median_abs_error_frames"),
    ("within ±3 frames", "±3 fr", "within_3_frames"),
    ("within 10 % of the clip", "±10 %", "within_10pct_of_clip"),
    ("on the first/last frame", "edge", "on_clip_edge"),
    ("mean confidence", "conf", "mean_confidence"),
    (f"within ±3 when confidence ≥ {SURE}", "±3 sure", "within_3_frames_when_sure"),
)


def figure_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    """Table rows: one per method overall, then per method and dataset where there are several."""
    rows = []
    for method, scopes in metrics.items():
        named = [(method, scopes["overall"])]
        if len(scopes["per_dataset"]) > 1:
            named += [(f"{method} / {d}", m) for d, m in scopes["per_dataset"].items()]
        rows += [[name, *(m[key] for *_, key in FIGURE_COLUMNS)] for name, m in named]
    return rows


def _worst(rows: Sequence[SpottedClip]) -> list[list[Any]]:
    """The largest errors of each method."""
    ordered: list[SpottedClip] = []
    for method in dict.fromkeys(r.method for r in rows):
        mine = sorted((r for r in rows if r.method == method), key=lambda r: -abs(r.error))
        ordered += mine[:WORST_ROWS]
    return [
        [r.method, f"{r.dataset}/{r.subject}/{r.sample}", f"{r.first}..{r.last}"]
        + [r.annotated, r.spotted, r.error, f"{r.confidence:.2f}"]
        for r in ordered
    ]


WORST_HEADER = ("method", "clip", "frames", "annotated", "spotted", "error", "confidence")


def spotting_document(
    metrics: dict[str, Any], settings: dict[str, Any], rows: Sequence[SpottedClip]
) -> Document:
    """The report: what was spotted how, the pooled figures, and the largest errors."""
    header = ["scope", *(name for name, *_ in FIGURE_COLUMNS)]
    return Document(f"Apex spotting on {settings['dataset']}").add(
        Facts([(key, str(value)) for key, value in settings.items()]),
        Heading("Spotted against annotated apex (pooled over clips)"),
        Table(header, figure_rows(metrics)),
        Heading(f"Largest errors (frames; at most {WORST_ROWS} per method)"),
        Table(WORST_HEADER, _worst(rows), text_columns=3),
    )


def claim_spotting_folder(folder: str | Path, overwrite: bool = False) -> None:
    """Make `folder` ready for a spotting run. An earlier spotting run there is replaced (it is
    quick to redo and keeps no partial work); a folder that holds anything else, e.g. a training
    run whose metrics and report these files would replace, is refused unless `overwrite`."""
    path = Path(folder)

    def clear() -> None:
        for name in OUTPUT_FILES:
            (path / name).unlink(missing_ok=True)

    claim_folder(
        path, SPOTTING_FILE, "spotting run", list, clear, resume=False, overwrite=overwrite
    )


def write_spotting_run(
    out_dir: str | Path, rows: Sequence[SpottedClip], settings: dict[str, Any]
) -> dict[str, Any]:
    """Write spotting.csv, metrics.json (figures + settings), report.md and report.html."""
    out = Path(out_dir)
    metrics = spotting_metrics(rows)
    write_text_atomic(out / SPOTTING_FILE, spotting_csv(rows))
    write_json_atomic(out / METRICS_FILE, {"settings": settings, "methods": metrics})
    document = spotting_document(metrics, settings, rows)
    write_text_atomic(out / REPORT_FILE, to_markdown(document))
    write_text_atomic(out / HTML_FILE, to_html(document))
    return metrics
