"""Reading annotation files and listing frames, shared by every loader.

Spreadsheets are read cell by cell (header=None) so that every row keeps the number Excel shows
for it: error messages can then say "CASME2-coding-20140508.xlsx row 17" and the user finds the
cell at once. Frame files are listed in natural numeric order (`img9` before `img10`) because
the number in a frame's name is what onset/apex/offset refer to.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from merkit.errors import AnnotationError, DataLayoutError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
HEADER_SEARCH_ROWS = 30  # SAMM has 13 preamble rows; no release has more than a few dozen
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class Row:
    """One data row of an annotation table: its values by column name and its row number."""

    file: Path
    number: int  # 1-based row (Excel row number, or CSV line number)
    values: dict[str, object]

    @property
    def where(self) -> str:
        """How error messages name this row."""
        return f"{self.file.name} row {self.number}"

    def __getitem__(self, column: str) -> object:
        return self.values[column]


def _norm(name: object) -> str:
    """Column-name key that ignores case and spacing (releases differ in both)."""
    return " ".join(str(name).split()).lower()


def is_blank(value: object) -> bool:
    """True for an empty cell (None, NaN or only spaces)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def as_int(value: object) -> int | None:
    """An integer cell value, or None when the cell is blank or not a number (e.g. "/")."""
    if is_blank(value) or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def as_text(value: object) -> str:
    """A cell as text: blank -> "", whole floats without ".0" (Excel stores 6 as 6.0)."""
    if is_blank(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def find_file(root: Path, pattern: str, what: str) -> Path:
    """The one file in `root` matching glob `pattern`; several are refused, not guessed between."""
    matches = sorted(p for p in root.glob(pattern) if p.is_file() and not p.name.startswith("~$"))
    if not matches:
        raise AnnotationError(f"{root}: no {what} found (expected a file named {pattern})")
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise AnnotationError(f"{root}: several {what}s ({names}); pick one with annotations=PATH")
    return matches[0]


def _read_raw_sheet(path: Path, sheet: str | None) -> pd.DataFrame:
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file does not exist")
    try:
        book = pd.ExcelFile(path, engine="openpyxl")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise AnnotationError(f"{path}: cannot read as an .xlsx spreadsheet ({exc})") from None
    with book:
        names = [str(n) for n in book.sheet_names]
        if sheet is not None and sheet not in names:
            raise AnnotationError(
                f"{path}: no sheet named {sheet!r} (sheets present: {', '.join(names)})"
            )
        chosen = sheet if sheet is not None else names[0]
        return pd.read_excel(book, sheet_name=chosen, header=None, dtype=object)


def _locate_header(raw: pd.DataFrame, columns: Sequence[str], path: Path) -> tuple[int, dict]:
    """Index of the header row and a map column -> position; error names what is missing."""
    wanted = {_norm(c): c for c in columns}
    best: tuple[int, dict[str, int]] = (0, {})
    for index in range(min(HEADER_SEARCH_ROWS, len(raw))):
        cells = {_norm(v): pos for pos, v in enumerate(raw.iloc[index]) if not is_blank(v)}
        found = {wanted[k]: cells[k] for k in wanted if k in cells}
        if len(found) == len(wanted):
            return index, found
        if len(found) > len(best[1]):
            best = (index, found)
    missing = [c for c in columns if c not in best[1]]
    if not best[1]:
        raise AnnotationError(
            f"{path}: no header row with the expected columns ({', '.join(columns)})"
        )
    raise AnnotationError(
        f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
        f"in the header on row {best[0] + 1}"
    )


def read_sheet(
    path: Path,
    columns: Sequence[str],
    sheet: str | None = None,
    optional: Sequence[str] = (),
) -> list[Row]:
    """Data rows of a spreadsheet whose header holds `columns` (found in the first rows).

    `optional` columns are read when present and blank otherwise (releases differ in them).
    Fully blank rows are dropped; an empty sheet, a missing column, a missing sheet or an
    unreadable file raise AnnotationError naming the file.
    """
    raw = _read_raw_sheet(path, sheet)
    if raw.dropna(how="all").empty:
        raise AnnotationError(f"{path}: the spreadsheet is empty")
    header, positions = _locate_header(raw, columns, path)
    header_cells = {_norm(v): pos for pos, v in enumerate(raw.iloc[header]) if not is_blank(v)}
    extra = {c: header_cells.get(_norm(c)) for c in optional}
    rows = []
    for index in range(header + 1, len(raw)):
        cells = raw.iloc[index]
        values = {c: cells.iloc[pos] for c, pos in positions.items()}
        if all(is_blank(v) for v in values.values()):
            continue
        values.update({c: None if pos is None else cells.iloc[pos] for c, pos in extra.items()})
        rows.append(Row(path, index + 1, values))
    if not rows:
        raise AnnotationError(f"{path}: the header on row {header + 1} has no data rows below it")
    return rows


def read_headerless_csv(path: Path, columns: Sequence[str]) -> list[Row]:
    """Rows of a CSV without a header whose lines hold exactly `columns`, as text."""
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file does not exist")
    try:
        table = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise AnnotationError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read as CSV ({exc})") from None
    if table.shape[1] != len(columns):
        raise AnnotationError(
            f"{path}: expected {len(columns)} columns per line ({','.join(columns)}), "
            f"found {table.shape[1]}"
        )
    return [
        Row(path, index + 1, {c: str(v).strip() for c, v in zip(columns, line, strict=True)})
        for index, line in enumerate(table.itertuples(index=False))
    ]


def frame_number(path: Path) -> int | None:
    """The frame index written in a file name: its last run of digits (`006_05562` -> 5562)."""
    digits = _DIGITS.findall(path.stem)
    return int(digits[-1]) if digits else None


def list_frames(folder: Path) -> tuple[tuple[Path, ...], tuple[int, ...]]:
    """Image files of a clip folder in numeric order, and the number each name carries.

    Raises DataLayoutError when two files carry the same number, since the annotation's frame
    numbers would then be ambiguous.
    """
    numbered: dict[int, Path] = {}
    for path in folder.iterdir():
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        number = frame_number(path)
        if number is None:
            continue
        if number in numbered:
            raise DataLayoutError(
                f"{folder}: frames {numbered[number].name} and {path.name} carry the same "
                f"number {number}"
            )
        numbered[number] = path
    order = sorted(numbered)
    return tuple(numbered[n] for n in order), tuple(order)


def subdirs(folder: Path) -> Iterator[Path]:
    """Sub-folders of `folder` in natural order (s2 before s10), hidden ones left out."""
    found = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    yield from sorted(found, key=natural_key)


def natural_key(path: Path) -> tuple:
    """Sort key that compares digit runs as numbers."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in _DIGITS.split(path.name))
