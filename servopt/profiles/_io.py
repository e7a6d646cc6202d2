"""Reading and writing profile files: CSV and Parquet in servopt's schema, and :class:`ProfileTable`."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from servopt.atomic import atomic_write, default_mode
from servopt.exceptions import ValidationError
from servopt.profiles._schema import RowPlaces, check_duplicates, hw_columns, label_columns, validate_frame

__all__ = ["ProfileTable", "load_profile", "read_csv_cells", "read_csv_fast", "write_profile", "profile_from_frame",
           "default_mode"]

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass
class ProfileTable:
    """A validated profile: one row per measurement in the canonical schema (SPEC §2).

    Attributes
    ----------
    frame : pandas.DataFrame
        The canonical frame (see :func:`servopt.profiles.validate_frame`).
    sources : list of pathlib.Path
        The files it was read from (empty for a table built in memory).
    """

    frame: pd.DataFrame
    sources: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def label_columns(self) -> list[str]:
        """Configuration columns beyond the canonical ones (``precision``, ``concurrency``, ...)."""
        return label_columns(self.frame)

    @property
    def hw_columns(self) -> list[str]:
        """Hardware-monitoring feature columns (``hw.*``)."""
        return hw_columns(self.frame)

    @property
    def source(self) -> str:
        """The files as one string, for messages."""
        return ", ".join(map(str, self.sources)) or "<profile>"

    def select(self, **where: Any) -> ProfileTable:
        """Rows whose columns equal the given values (``None`` values are ignored).

        Raises
        ------
        ValidationError
            When a column does not exist or no row matches; the message lists the values available.
        """
        from servopt.profiles._select import select_rows

        return ProfileTable(select_rows(self.frame, where, self.source), list(self.sources))

    def write(self, path: str | Path) -> Path:
        """Write the table to ``path`` (``.csv`` or ``.parquet``), atomically."""
        return write_profile(self.frame, path)


def profile_from_frame(frame: pd.DataFrame, source: str = "<profile>") -> ProfileTable:
    """Validate an in-memory table and wrap it as a :class:`ProfileTable`."""
    return ProfileTable(validate_frame(frame, source), [])


def read_csv_cells(path: str | Path) -> tuple[list[str], list[list[str]], list[str]]:
    """Read a CSV file as text cells.

    Returns the header, the data rows, and each row's location for messages (``"row 3 (line 4)"``).
    Fully blank lines are skipped; every other line is a row.

    Raises
    ------
    ValidationError
        Unreadable file, not UTF-8, NUL bytes, malformed quoting, a row with the wrong number of cells,
        an empty or duplicated column name.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValidationError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValidationError(f"{path}: is a directory, expected a CSV file") from None
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path}: not UTF-8 text (bad byte at offset {exc.start}); servopt reads CSV "
                              "files encoded in UTF-8") from None
    if "\x00" in text:
        raise ValidationError(f"{path}: contains NUL bytes (a binary file?); expected a CSV text file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    where: list[str] = []
    try:
        for cells in reader:
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if header is None:
                header = [c.strip() for c in cells]
                for i, name in enumerate(header):
                    if not name:
                        raise ValidationError(f"{path}: line {reader.line_num}: column {i + 1} of the header has "
                                              "no name; every column needs a name")
                dup = sorted({n for n in header if header.count(n) > 1})
                if dup:
                    raise ValidationError(f"{path}: line {reader.line_num}: column(s) {', '.join(map(repr, dup))} "
                                          "appear more than once in the header; keep one")
                continue
            if len(cells) != len(header):
                raise ValidationError(
                    f"{path}: row {len(rows) + 1} (line {reader.line_num}) has {len(cells)} cells but the header "
                    f"has {len(header)} columns; every row needs one cell per column (quote cells that hold "
                    "commas)")
            rows.append(cells)
            where.append(f"row {len(rows)} (line {reader.line_num})")
    except csv.Error as exc:
        raise ValidationError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
    if header is None:
        raise ValidationError(f"{path}: empty file; expected a CSV header line and one row per measurement")
    return header, rows, where


def read_csv_fast(path: Path) -> pd.DataFrame | None:
    """A CSV profile read by pandas' C parser, or None where :func:`read_csv_cells` must read it (and explain).

    Every cell is read as text and nothing is taken as missing here (``dtype=str, na_filter=False``), so the
    frame holds the cells :func:`read_csv_cells` would give, for the schema to parse (vectorised). Anything the
    careful reader treats differently returns None: NUL bytes, text that is not UTF-8, a header that pandas
    renames (empty or repeated names), blank lines or quoted line breaks (row N would not be line N + 1), a row
    with too many or too few cells, a parser error. Rows are then ``"row N (line N + 1)"``.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\x00" in data:
        return None
    try:
        first = next(line for line in data.decode("utf-8-sig").splitlines() if line.strip())
        header = [c.strip() for c in next(csv.reader([first]))]
        frame = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", na_filter=False, dtype=str, low_memory=False)
    except (UnicodeDecodeError, StopIteration, csv.Error, ValueError, pd.errors.ParserError):
        return None
    if data.count(b"\n") != len(frame) + data.endswith(b"\n"):
        return None  # blank lines or line breaks inside cells: row N is not line N + 1
    if [str(c).strip() for c in frame.columns] != header or len(set(header)) != len(header) or "" in header:
        return None
    frame.columns = header
    if len(frame) and (frame[header[-1]].astype(str) == "").any():
        return None  # pandas fills a short row's missing cells with "": the careful reader counts them
    for col in frame.columns:
        values = frame[col]
        if isinstance(values.dtype, pd.StringDtype):
            if values.isna().any():
                return None
        elif values.dtype == object:
            if pd.api.types.infer_dtype(values, skipna=False) != "string":
                return None
        else:
            return None  # every cell is read as text (a short row gives NaN): the careful reader decides
    return frame


def read_raw(path: Path) -> tuple[pd.DataFrame, Sequence[str]]:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        header, rows, where = read_csv_cells(path)
        return pd.DataFrame(rows, columns=header, dtype=object), where
    if suffix in PARQUET_SUFFIXES:
        if not path.is_file():
            raise ValidationError(f"{path}: no such file")
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise ValidationError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from None
        if not isinstance(frame.index, pd.RangeIndex):
            frame = frame.reset_index(drop=True)
        return frame, RowPlaces(len(frame))
    raise ValidationError(f"{path}: unknown profile format {path.suffix or '(no extension)'!r}; accepted: "
                          f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)} (perf_analyzer and Model Analyzer "
                          "output: use `servopt import`)")


def load_profile(path_or_paths: str | Path | Iterable[str | Path]) -> ProfileTable:
    """Read and validate one or more profile files in servopt's schema (CSV or Parquet).

    Parameters
    ----------
    path_or_paths : path or iterable of paths
        Files ending in ``.csv``, ``.parquet`` or ``.pq``. Several files are concatenated in order.

    Returns
    -------
    ProfileTable

    Raises
    ------
    ValidationError
        Naming the file, the row and the column, and what would be accepted (also for duplicate points across
        files).

    Examples
    --------
    >>> table = load_profile("profiles/nvidia_resnet50_triton.csv")
    >>> sorted(table.frame["hardware"].unique())                   
    ['A100-80GB', 'A40', 'T4', 'V100-32GB']
    """
    if isinstance(path_or_paths, (str, os.PathLike)):
        paths = [Path(path_or_paths)]
    else:
        paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise ValidationError("load_profile: no profile files given")
    frames: list[pd.DataFrame] = []
    wheres: list[Sequence[str]] = []
    for path in paths:
        frame, where = _read_valid(path)
        frames.append(frame)
        wheres.append(_Prefixed(str(path), where))
    if len(frames) == 1:
        return ProfileTable(frames[0], paths)
    frame = pd.concat(frames, ignore_index=True, sort=False)
    for col in ("input_size",):
        if col in frame and not frame[col].isna().any():
            frame[col] = frame[col].astype("int64")
    check_duplicates(frame, "profiles", _Chained(wheres))
    return ProfileTable(frame, paths)


def _read_valid(path: Path) -> tuple[pd.DataFrame, Sequence[str]]:
    """One profile file read and validated: the C reader first, the careful one for anything it cannot vouch for.

    A file the fast path reads but the schema refuses is read again by :func:`read_csv_cells`, whose answer
    (the frame, or the error naming row and line) is the one given: the fast path never changes a result.
    """
    if path.suffix.lower() in CSV_SUFFIXES:
        fast = read_csv_fast(path)
        if fast is not None:
            where = _Lines(len(fast))
            try:
                return validate_frame(fast, str(path), where), where
            except ValidationError:
                pass
    raw, where = read_raw(path)
    return validate_frame(raw, str(path), where), where


class _Lines(RowPlaces):
    """``"row N (line N + 1)"`` on demand (a CSV file with one line per row after the header)."""

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        row = i % self.n + 1
        return f"row {row} (line {row + 1})"


class _Prefixed(Sequence[str]):
    """``"FILE: row N"`` on demand."""

    def __init__(self, prefix: str, inner: Sequence[str]) -> None:
        self.prefix, self.inner = prefix, inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return f"{self.prefix}: {self.inner[i]}"


class _Chained(Sequence[str]):
    """Several sequences read as one, on demand."""

    def __init__(self, parts: list[Sequence[str]]) -> None:
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        for p in self.parts:
            if i < len(p):
                return p[i]
            i -= len(p)
        raise IndexError(i)


def write_profile(frame: pd.DataFrame | ProfileTable, path: str | Path) -> Path:
    """Write a profile to ``path`` (CSV or Parquet by extension) atomically: temp file, then rename.

    Raises
    ------
    ValidationError
        Unknown extension or unwritable location.
    """
    if isinstance(frame, ProfileTable):
        frame = frame.frame
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise ValidationError(f"{path}: unknown profile format {path.suffix or '(no extension)'!r}; accepted: "
                              f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}")
    with atomic_write(path) as handle:
        if suffix in CSV_SUFFIXES:
            handle.write(frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        else:
            frame.to_parquet(handle, index=False)
    return path


def locations(n: int, prefix: str = "row") -> Sequence[str]:
    """``["row 1", "row 2", ...]``."""
    return [f"{prefix} {i + 1}" for i in range(n)]
