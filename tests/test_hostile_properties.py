"""Property-based hostile input: generated malformed annotation files for three loaders.

Each example starts from a valid fake release (tests/builders.py) and applies random damage:
cells replaced by values of mixed types (NaN, None, huge ints, unicode, empty strings),
columns dropped, renamed or re-cased, rows blanked, duplicated or cut (down to zero), the file
re-encoded, or replaced by random bytes. Starting from a valid file keeps most rows loadable, so
the consistency checks run on real samples and not only on refusals.

The property: a loader returns consistent samples (onset <= apex <= offset where given) or
raises a MerkitError subclass; never a traceback from pandas, openpyxl, csv or the OS. Each
example writes into its own `tempfile` folder (pytest's function-scoped `tmp_path` would be
shared across examples) and the tests are bounded to 40 examples, a few seconds in all.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from builders import (
    CASME2_CLIPS,
    CASME2_HEADER,
    CASME2_XLSX,
    FLOW_GT,
    FLOW_ROWS,
    SAMM_CLIPS,
    SAMM_HEADER,
    SAMM_PREAMBLE,
    SAMM_XLSX,
    build_casme2,
    build_megc2019_flow,
    write_xlsx,
)
from merkit.data.base import SampleSet, Skipped
from merkit.data.registry import load_dataset
from merkit.errors import MerkitError

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    # Writing a workbook and a fake release takes ~20 ms, which can trip the "too slow" check.
    suppress_health_check=[HealthCheck.too_slow],
)

# openpyxl refuses control characters and lone surrogates in cells; everything else is fair.
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=10)
CELLS = st.one_of(
    st.none(),
    st.just(""),
    st.just("/"),
    st.booleans(),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.integers(min_value=-2, max_value=110),  # near the real frame numbers
    st.floats(allow_nan=True, allow_infinity=False),
    st.sampled_from([46.0, 1.5, -3.0, 1e30, " 48 "]),
    st.sampled_from(["happiness", "Disgust ", "fear", "Others", "sadness", "SURPRISE"]),
    st.sampled_from(["sub01", "1", "EP02_01f", " 006 ", "../x", "006_1_2"]),
    TEXT,
)
# Raw bytes in place of the whole file in about one example out of four.
GARBAGE = st.one_of(st.none(), st.none(), st.none(), st.binary(max_size=300))
INDEX = st.integers(min_value=0, max_value=50)  # taken modulo the table's size
DAMAGE = st.lists(
    st.one_of(
        st.tuples(st.just("cell"), INDEX, INDEX, CELLS),
        st.tuples(st.just("cell"), INDEX, INDEX, CELLS),  # the most common damage
        st.tuples(
            st.just("rename"), INDEX, st.one_of(TEXT, st.none(), st.sampled_from(["upper", " x "]))
        ),
        st.tuples(st.just("drop column"), INDEX),
        st.tuples(st.just("blank row"), INDEX),
        st.tuples(st.just("duplicate row"), INDEX),
        st.tuples(st.just("keep rows"), INDEX),
    ),
    max_size=6,
)


def damaged(
    header: list[object], rows: list[list[object]], damage: list[tuple]
) -> tuple[list, list]:
    """`header` and `rows` with each damage applied in turn (indices wrap around)."""
    header, rows = list(header), [list(r) for r in rows]
    for kind, *args in damage:
        if kind == "cell" and rows and rows[args[0] % len(rows)]:
            row = rows[args[0] % len(rows)]
            row[args[1] % len(row)] = args[2]
        elif kind == "rename" and header:
            i = args[0] % len(header)
            new = args[1]
            if new == "upper":
                new = str(header[i]).upper()
            elif new == " x ":
                new = f"  {str(header[i]).lower()} "
            header[i] = new
        elif kind == "drop column" and len(header) > 1:
            i = args[0] % len(header)
            header.pop(i)
            rows = [r[:i] + r[i + 1 :] for r in rows]
        elif kind == "blank row":
            rows.insert(args[0] % (len(rows) + 1), [None] * len(header))
        elif kind == "duplicate row" and rows:
            rows.append(list(rows[args[0] % len(rows)]))
        elif kind == "keep rows":
            rows = rows[: args[0] % (len(rows) + 1)]
    return header, rows


def assert_consistent(data: SampleSet) -> None:
    """What every successful load promises: onset <= apex <= offset where they are given."""
    assert isinstance(data, SampleSet)
    for sample in data:
        assert 0 <= sample.label < len(data.class_names)
        known = [n for n in (sample.onset, sample.apex, sample.offset) if n is not None]
        assert known == sorted(known) and all(n >= 0 for n in known), sample
        if sample.offset is not None or sample.apex is not None:
            assert sample.onset is not None and sample.apex is not None, sample
        if sample.frames:
            assert {sample.onset, sample.apex} <= set(sample.frame_numbers), sample
    assert len({s.uid for s in data}) == len(data)
    assert all(isinstance(s, Skipped) and s.reason for s in data.skipped)


def load_or_refuse(name: str, root: Path) -> None:
    """The property itself; `event` shows with --hypothesis-show-statistics how deep it got."""
    try:
        data = load_dataset(name, root, None if name == "megc2019-flow" else "all")
    except MerkitError as exc:
        assert str(exc).strip(), "a user error must say what is wrong"
        event(f"refused: {type(exc).__name__}")
        return
    event(f"loaded: {'some' if len(data) else 'no'} samples")
    assert_consistent(data)


def casme2_rows() -> list[list[object]]:
    return [
        [c.subject, c.filename, i, c.onset, c.apex, c.offset, "", c.action_units, c.emotion]
        for i, c in enumerate(CASME2_CLIPS, start=1)
    ]


@PROPERTY
@given(damage=DAMAGE, garbage=GARBAGE, frames=st.booleans())
def test_casme2_loader_never_crashes(damage, garbage: bytes | None, frames: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = build_casme2(Path(folder), frames="raw" if frames else None)
        header, rows = damaged(list(CASME2_HEADER), casme2_rows(), damage)
        write_xlsx(root / CASME2_XLSX, header, rows)
        if garbage is not None:
            (root / CASME2_XLSX).write_bytes(garbage)
        load_or_refuse("casme2", root)


@PROPERTY
@given(damage=DAMAGE, garbage=GARBAGE, preamble=st.integers(min_value=0, max_value=14))
def test_samm_loader_never_crashes(damage, garbage: bytes | None, preamble: int) -> None:
    rows = [
        [c.subject, c.filename, 1, c.onset, c.apex, c.offset, 5, "Micro", c.action_units]
        + [c.emotion, "I", ""]
        for c in SAMM_CLIPS
    ]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)  # annotations only: the frame checks are exercised through CASME II
        header, rows = damaged(list(SAMM_HEADER), rows, damage)
        write_xlsx(root / SAMM_XLSX, header, rows, preamble=SAMM_PREAMBLE[:preamble])
        if garbage is not None:
            (root / SAMM_XLSX).write_bytes(garbage)
        load_or_refuse("samm", root)


FIELD = st.one_of(
    st.sampled_from(["casme", "", "-2", "1.5", "2.0", "3", "nan", "../x", "é", '"open', "SAMM"]),
    TEXT.filter(lambda t: not set(t) & set('\n\r"')),
)


@PROPERTY
@given(
    damage=DAMAGE,
    extra=st.lists(st.lists(FIELD, max_size=6), max_size=2),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16"]),
    garbage=GARBAGE,
)
def test_megc2019_flow_loader_never_crashes(
    damage, extra, encoding: str, garbage: bytes | None
) -> None:
    fields = ["db", "subject", "filename", "label"]  # "renaming" these edits the first line
    header, rows = damaged(fields, [[*map(str, r)] for r in FLOW_ROWS] + extra, damage)
    lines = [header] if header != fields else []
    text = "".join(
        ",".join("" if v is None else str(v) for v in line) + "\n" for line in lines + rows
    )
    with tempfile.TemporaryDirectory() as folder:
        root = build_megc2019_flow(Path(folder))
        data = garbage if garbage is not None else text.encode(encoding, errors="replace")
        (root / FLOW_GT).write_bytes(data)
        load_or_refuse("megc2019-flow", root)
