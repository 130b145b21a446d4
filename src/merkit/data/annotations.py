"""Reading annotation files and listing frames, shared by every loader.

Spreadsheets are read cell by cell (header=None) so that every row keeps the number Excel shows
for it: error messages can then say "CASME2-coding-20140508.xlsx row 17" and the user finds the
cell at once. Frame files are listed in natural numeric order (`img9` before `img10`) because
the number in a frame's name is what onset/apex/offset refer to.

Everything here expects hostile input (a sheet saved as CSV in another encoding, HTML saved
under an .xlsx name, unreadable folders, symlink loops) and turns it into one AnnotationError or
DataLayoutError naming the file, never a traceback from pandas, openpyxl or the OS.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from merkit.data.files import listing
from merkit.errors import AnnotationError, DataLayoutError

if TYPE_CHECKING:
    import pandas as pd

HEADER_SEARCH_ROWS = 30  # SAMM has 13 preamble rows; no release has more than a few dozen
# Frame numbers index arrays later on (int32 in NumPy/PyTorch); anything larger is a typo.
MAX_FRAME_NUMBER = 2**31 - 1
# Users re-save sheets with Excel's "Save as CSV"; both forms are read.
SHEET_SUFFIXES = (".xlsx", ".csv")
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Without a BOM: UTF-8, then Windows Excel's cp1252, then latin-1 (which decodes any byte).
_ENCODINGS = ("utf-8", "cp1252", "latin-1")


class CellError(AnnotationError):
    """One cell of one row cannot be read.

    Spreadsheet loaders skip that row and report it; files that define a protocol exactly (the
    MEGC ground truth) are refused instead.
    """


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


def as_frame(value: object) -> int | None:
    """A frame-number cell: a whole number in 0..MAX_FRAME_NUMBER, else None (-3, 1e30, "/")."""
    number = as_int(value)
    return number if number is not None and 0 <= number <= MAX_FRAME_NUMBER else None


def as_text(value: object) -> str:
    """A cell as text: blank -> "", whole floats without ".0" (Excel stores 6 as 6.0)."""
    if is_blank(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def is_plain_name(text: str) -> bool:
    """Whether `text` names one folder inside the dataset (not "", "..", nor a path)."""
    return text not in ("", ".", "..") and not any(c in text for c in "/\\\0")


# --- finding and reading files -----------------------------------------------------------------


def find_file(root: Path, pattern: str, what: str) -> Path:
    """The one file in `root` matching glob `pattern`; several are refused, not guessed between.

    A pattern for an .xlsx sheet also finds the same sheet saved as .csv.
    """
    if not root.is_dir():
        state = "is a file" if root.exists() else "does not exist"
        raise DataLayoutError(f"{root}: {state}; expected the dataset's root folder")
    patterns = [pattern]
    if pattern.endswith(".xlsx"):
        patterns += [pattern.removesuffix(".xlsx") + suffix for suffix in SHEET_SUFFIXES[1:]]
    matches = sorted(
        path
        for path in listing(root)
        if any(fnmatchcase(path.name, p) for p in patterns)
        and path.is_file()
        and not path.name.startswith("~$")  # Excel's lock file of an open workbook
    )
    if not matches:
        raise AnnotationError(f"{root}: no {what} found (expected a file named {pattern})")
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise AnnotationError(f"{root}: several {what}s ({names}); pick one with annotations=PATH")
    return matches[0]


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise AnnotationError(f"{path}: annotation file {state}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read the file ({exc.strerror})") from None


def read_text(path: Path) -> str:
    """A text annotation file, whatever encoding a spreadsheet program saved it in."""
    data = _read_bytes(path)
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                raise AnnotationError(f"{path}: not valid {encoding} text after its BOM") from None
    if b"\0" in data:
        raise AnnotationError(f"{path}: holds binary data (NUL bytes), expected a text CSV")
    for encoding in _ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _csv_lines(path: Path) -> list[list[str]]:
    """Fields of every line of a CSV file (blank lines kept as [] so line numbers hold)."""
    text = read_text(path)
    try:
        return [line for line in csv.reader(io.StringIO(text, newline=""), strict=True)]
    except csv.Error as exc:
        raise AnnotationError(f"{path}: cannot read as CSV ({exc})") from None


def _not_xlsx_reason(head: bytes) -> str:
    """What a file named .xlsx really holds (from its first bytes), so the user knows what to do."""
    if not head:
        return "the file is empty"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "it is an old .xls workbook; save it as .xlsx or .csv"
    if head.lstrip().startswith(b"<"):
        return "it holds HTML/XML, not a workbook; save the sheet as .xlsx or .csv"
    if b"\0" not in head[:512]:
        return "it holds plain text; if that is CSV, rename the file to .csv"
    return "it is not a zip archive, which every .xlsx is"


def _read_tables(path: Path, sheet: str | None) -> list[tuple[str, pd.DataFrame]]:
    """(name, raw cells) of the sheet asked for, or of every sheet when `sheet` is None."""
    import pandas as pd  # slow to import; only reading a sheet needs it

    if path.suffix.lower() == ".csv":
        lines = _csv_lines(path)
        width = max((len(line) for line in lines), default=0)
        table = pd.DataFrame([line + [""] * (width - len(line)) for line in lines], dtype=object)
        return [(path.name, table)]
    data = _read_bytes(path)
    if not data.startswith(b"PK"):
        reason = _not_xlsx_reason(data[:512])
        raise AnnotationError(f"{path}: cannot read as an .xlsx spreadsheet ({reason})")
    # openpyxl and the zip/XML layers below it raise many unrelated types on a damaged file
    # (BadZipFile, KeyError, ParseError, ...); each means the same thing to the user.
    try:
        with pd.ExcelFile(io.BytesIO(data), engine="openpyxl") as book:
            names = [str(n) for n in book.sheet_names]
            if sheet is not None and sheet not in names:
                raise AnnotationError(
                    f"{path}: no sheet named {sheet!r} (sheets present: {', '.join(names)})"
                )
            chosen = [sheet] if sheet is not None else names
            return [
                (name, pd.read_excel(book, sheet_name=name, header=None, dtype=object))
                for name in chosen
            ]
    except AnnotationError:
        raise
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        raise AnnotationError(f"{path}: cannot read as an .xlsx spreadsheet ({reason})") from None


def _header_cells(cells: pd.Series) -> dict[str, list[int]]:
    """Normalised header name -> the positions holding it."""
    found: dict[str, list[int]] = {}
    for pos, value in enumerate(cells):
        if not is_blank(value):
            found.setdefault(_norm(value), []).append(pos)
    return found


class _NoHeader(AnnotationError):
    """A table without the expected header; `matched` ranks how close it came (across sheets)."""

    def __init__(self, message: str, matched: int) -> None:
        super().__init__(message)
        self.matched = matched


def _locate_header(raw: pd.DataFrame, columns: Sequence[str], where: str) -> tuple[int, dict]:
    """Index of the header row and a map column -> position; error names what is missing."""
    wanted = {_norm(c): c for c in columns}
    best: tuple[int, dict[str, int]] = (0, {})
    for index in range(min(HEADER_SEARCH_ROWS, len(raw))):
        cells = _header_cells(raw.iloc[index])
        found = {wanted[k]: cells[k] for k in wanted if k in cells}
        twice = [c for c, positions in found.items() if len(positions) > 1]
        if len(found) == len(wanted) and twice:
            raise _NoHeader(
                f"{where}: column {twice[0]!r} appears {len(found[twice[0]])} times in the "
                f"header on row {index + 1}; keep only one",
                len(found),
            )
        if len(found) == len(wanted):
            return index, {c: positions[0] for c, positions in found.items()}
        if len(found) > len(best[1]):
            best = (index, {c: positions[0] for c, positions in found.items()})
    if not best[1]:
        raise _NoHeader(
            f"{where}: no header row with the expected columns ({', '.join(columns)}) "
            f"in its first {HEADER_SEARCH_ROWS} rows",
            0,
        )
    missing = [c for c in columns if c not in best[1]]
    raise _NoHeader(
        f"{where}: missing column(s) {', '.join(repr(c) for c in missing)} "
        f"in the header on row {best[0] + 1}",
        len(best[1]),
    )


def read_sheet(
    path: Path,
    columns: Sequence[str],
    sheet: str | None = None,
    optional: Sequence[str] = (),
) -> list[Row]:
    """Data rows of a spreadsheet (.xlsx, or the sheet saved as .csv) holding `columns`.

    The header is found in the first rows; without `sheet`, in the first sheet that has it (a
    workbook may carry notes or pivot sheets before the annotation). `optional` columns are
    read when present and blank otherwise (releases differ in them). Fully blank rows are
    dropped; an empty sheet, a missing or repeated column, a missing sheet or an unreadable
    file raise AnnotationError naming the file.
    """
    tables = _read_tables(path, sheet)
    if all(is_blank(v) for _, raw in tables for v in raw.to_numpy().ravel()):
        raise AnnotationError(f"{path}: the spreadsheet is empty")
    failures: list[_NoHeader] = []
    for name, raw in tables:
        where = f"{path}" if len(tables) == 1 else f"{path} sheet {name!r}"
        try:
            header, positions = _locate_header(raw, columns, where)
        except _NoHeader as exc:
            failures.append(exc)
            continue
        return _data_rows(path, raw, header, positions, optional)
    best = max(failures, key=lambda exc: exc.matched)
    raise AnnotationError(str(best))


def _data_rows(
    path: Path, raw: pd.DataFrame, header: int, positions: dict[str, int], optional: Sequence[str]
) -> list[Row]:
    header_cells = {k: p[0] for k, p in _header_cells(raw.iloc[header]).items()}
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
    """Rows of a CSV without a header whose lines hold exactly `columns`, as stripped text.

    Any encoding a spreadsheet program writes is accepted (UTF-8 with or without BOM, UTF-16,
    cp1252/latin-1), blank lines are dropped, and a first line that spells the column names is
    taken as an added header. A line with the wrong number of fields raises AnnotationError.
    """
    lines = _csv_lines(path)
    rows = []
    for number, line in enumerate(lines, start=1):
        fields = [field.strip() for field in line]
        if all(not field for field in fields):
            continue
        if not rows and [_norm(f) for f in fields] == [_norm(c) for c in columns]:
            continue  # a header the user added
        if len(fields) != len(columns):
            raise AnnotationError(
                f"{path.name} row {number}: expected {len(columns)} fields "
                f"({','.join(columns)}), found {len(fields)}"
            )
        rows.append(Row(path, number, dict(zip(columns, fields, strict=True))))
    if not rows:
        raise AnnotationError(f"{path}: the file is empty")
    return rows
