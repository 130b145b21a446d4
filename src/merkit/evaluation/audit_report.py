"""The leakage audit's report: its figures side by side with their inflation over honest LOSO,
each protocol's label, and the subject overlap of the sample-level k-fold. Works on the audit's
result (`audit.json`'s content), so it can be re-rendered without training anything."""

from __future__ import annotations

from typing import Any

from merkit.evaluation.document import Document, Facts, Heading, Paragraph, Table
from merkit.evaluation.report import landmark_text


def comparison_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows: scope x protocol with UF1/UAR/accuracy and, for leaking ones, the inflation."""
    rows = []
    loso = result["protocols"]["loso"]
    scopes = ["overall", *loso["per_dataset"]]
    for scope in scopes:
        for name, entry in result["protocols"].items():
            m = entry["overall"] if scope == "overall" else entry["per_dataset"].get(scope)
            if m is None:
                continue
            cells = []
            for key in ("uf1", "uar", "accuracy"):
                cell = f"{m[key]:.4f}"
                if name != "loso":
                    infl = result["inflation"][name]
                    d = infl["overall"] if scope == "overall" else infl["per_dataset"].get(scope)
                    cell += f" ({d[key]:+.4f})" if d else ""
                cells.append(cell)
            marker = " ⚠" if entry["leaking"] else ""
            rows.append([scope, f"{name}{marker}", str(m["n"]), *cells])
    return rows


COMPARISON_HEADER = ("scope", "protocol", "n", "UF1", "UAR", "accuracy")


def audit_document(result: dict[str, Any]) -> Document:
    """The figures side by side with their inflation, and the k-fold's subject overlap."""
    leak, oracle = result["leakage"], result["protocols"]["oracle"]
    rows = comparison_rows(result)
    marks = {p: f"{p} ⚠" if e["leaking"] else p for p, e in result["protocols"].items()}
    return Document(
        f"merkit leakage audit: {result['model']} on {result['data']['name']}",
        [
            Facts(_audit_facts(result)),
            Heading("Protocols"),
            Facts([(marks[p], e["label"]) for p, e in result["protocols"].items()]),
            Heading("Figures (in brackets the inflation vs honest LOSO)"),
            Table(COMPARISON_HEADER, rows, ["⚠" in row[1] for row in rows], text_columns=2),
            Paragraph(
                f"Oracle: mean chosen epoch {oracle['mean_chosen_epoch']:.1f} of "
                f"{result['recipe']['epochs']}, chosen per fold on the test subject's own labels."
            ),
            Heading("Subject overlap of the k-fold protocol"),
            Paragraph(f"{leak['summary']}.", "warning", "Warning:"),
            Table(OVERLAP_HEADER, _overlap_rows(leak)),
        ],
    )


def _audit_facts(result: dict[str, Any]) -> list[tuple[str, str]]:
    data, recipe = result["data"], result["recipe"]
    landmarks = [("facial points", landmark_text(data["landmarks"]))] if "landmarks" in data else []
    return landmarks + [
        ("data", f"{data['name']} ({data['root']})"),
        ("samples", f"{data['n_used']} samples, {data['n_subjects']} subjects"),
        ("data fingerprint", data["fingerprint"]),
        (
            "recipe",
            f"{result['model']}, {recipe['epochs']} epochs, {recipe['optimizer']} lr "
            f"{recipe['lr']}, {recipe['schedule']} schedule, seed {result['seed']}",
        ),
    ]


def _overlap_rows(leak: dict[str, Any]) -> list[list[Any]]:
    return [
        [f["fold"], f["n_train"], f["n_test"], f["n_test_subjects"], f["n_shared_subjects"]]
        for f in leak["folds"]
    ]


OVERLAP_HEADER = ("fold", "train", "test", "test subjects", "also in train")
