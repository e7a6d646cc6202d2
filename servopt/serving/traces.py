"""Request-rate traces: per-second request counts read from the formats the reference experiments use.

A trace is one non-negative number per second: the request rate (RPS) of that second. Three layouts are read:

* whitespace-separated numbers, on one line or one per line (InfAdapter's 21-minute window
  ``twitter_window_day15_min82-103_per_second.txt``, and ``workload.txt`` of the 22-day Twitter trace);
* CSV with a header; the rate (requests per second) is the column ``rps`` unless another is named (IPA's windows
  ``twitter_slice_*_damping8.csv`` have ``second,rps``). A time column is honoured (see :func:`read_trace`): rows
  may come in any order, but each second (minute, timestamp step) must have exactly one row; without one, the rows
  are consecutive seconds;
* the same text inside a compressed archive (``.tbz2``/``.tar.bz2``/``.tar.gz``/``.tgz``/``.tar``, or a single
  ``.bz2``/``.gz`` file), read in memory and never extracted to disk: the full Twitter trace
  ``twitter_workload_2021-08.tbz2`` can be sliced as IPA does (``start``, ``end``, ``damping``).

>>> import numpy as np
>>> t = as_trace([3, 0, 5])
>>> t.duration_s, float(t.rps.mean())
(3, 2.6666666666666665)
"""

from __future__ import annotations

import bz2
import gzip
import io
import math
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servopt.exceptions import ValidationError

__all__ = ["Trace", "read_trace", "as_trace", "rate_segments", "poisson_arrivals"]

_ARCHIVES = (".tbz2", ".tar.bz2", ".tar.gz", ".tgz", ".tar", ".tar.xz", ".txz")


@dataclass(frozen=True, eq=False)
class Trace:
    """Request rate per second.

    Attributes
    ----------
    rps : numpy.ndarray
        Float array, one rate (requests per second) per second of the trace, all finite and >= 0.
    source : str
        Where the numbers come from (a path, or ``"<array>"``).
    """

    rps: np.ndarray
    source: str = "<array>"

    @property
    def duration_s(self) -> int:
        """Length of the trace in seconds."""
        return int(self.rps.size)

    def window(self, start: int = 0, end: int | None = None) -> Trace:
        """The seconds ``[start, end)`` of this trace."""
        return Trace(self.rps[start:end].copy(), f"{self.source}[{start}:{'' if end is None else end}]")

    def scaled(self, factor: float) -> Trace:
        """This trace with every rate multiplied by ``factor``."""
        if not (factor > 0 and np.isfinite(factor)):
            raise ValidationError(f"trace scale factor must be a finite number > 0, got {factor!r}")
        return Trace(self.rps * factor, f"{self.source}*{factor:g}")


def as_trace(obj: Any, **read_options: Any) -> Trace:
    """A :class:`Trace` from a trace, a path (read with :func:`read_trace`) or a sequence of per-second rates."""
    if isinstance(obj, Trace):
        return obj
    if isinstance(obj, (str, Path)):
        return read_trace(obj, **read_options)
    try:
        rps = np.asarray(obj, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(
            f"a trace must be a path, a Trace or a sequence of per-second rates, got {type(obj).__name__}"
        ) from None
    if rps.ndim != 1 or rps.size == 0:
        raise ValidationError(f"a trace must be a non-empty one-dimensional sequence (one rate per second), got "
                              f"shape {rps.shape}")
    _check_values(rps, "<array>", lambda i: f"second {i}")
    return Trace(rps.copy(), "<array>")


def read_trace(
    path: str | Path,
    *,
    start: int | None = None,
    end: int | None = None,
    damping: float | None = None,
    column: str | None = None,
) -> Trace:
    """Read a per-second request-rate trace.

    Parameters
    ----------
    path : str or Path
        A ``.txt`` (whitespace-separated numbers), ``.csv`` (header row, then rows) or compressed file (see the
        module docstring); UTF-8 (a byte-order mark, as Excel writes, is skipped), LF or CRLF line ends.
    start, end : int, optional
        Keep the seconds ``[start, end)`` only, counted from the trace's first second (IPA's ``workload_config``
        slices).
    damping : float, optional
        Divide every rate by this factor and round down, as IPA's load generator does (``int(x / damping)``).
    column : str, optional
        CSV column holding the rate; default ``rps``, or (rows one second apart) the only column other than the
        time column.

    A CSV's time column is the one named (any case) ``second``/``seconds``/``sec``/``t``/``time_s``
    (whole seconds), ``minute``/``minutes``/``time_min`` (whole minutes; ``min`` is not one: it
    may be a rate statistic beside ``max``), ``hour``/``hours``/``time_h``
    (whole hours), or ``time``/``timestamp``/``datetime``/``date``/``ts`` (numbers: whole seconds; otherwise ISO
    8601 date-times such as ``2021-08-15 10:00:00``, whose step is the smallest difference between two rows).
    Rows are sorted by it; two rows for the same time, or a step missing between two rows, are refused, naming
    the rows. A row that lasts longer than a second (per-minute rows, timestamps 60 s apart) holds its rate for
    every second it lasts: the rate column must then be ``rps`` or named with ``column``, since another column
    might count requests per row rather than per second. Other columns are ignored.

    Returns
    -------
    Trace

    Raises
    ------
    ValidationError
        Missing file or a directory, unreadable archive, non-numeric, negative or non-finite value (naming the
        line or row and column), unknown column, duplicate or missing times, empty slice.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "t.csv"), "w") as fh:
    ...     _ = fh.write("second,rps\\n1,20\\n0,10\\n")
    >>> read_trace(os.path.join(d, "t.csv")).rps.tolist()      # sorted by the time column
    [10.0, 20.0]
    >>> with open(os.path.join(d, "m.csv"), "w") as fh:
    ...     _ = fh.write("minute,rps\\n0,5\\n1,7\\n")
    >>> t = read_trace(os.path.join(d, "m.csv"))               # each minute's rate held for its 60 seconds
    >>> t.duration_s, t.rps[[0, 59, 60, 119]].tolist()
    (120, [5.0, 5.0, 7.0, 7.0])
    >>> import shutil; shutil.rmtree(d)
    """
    path = Path(path)
    if path.is_dir():
        raise ValidationError(f"{path}: is a directory, not a trace file; give the trace file itself (.txt, .csv "
                              "or a compressed archive)")
    if not path.is_file():
        raise ValidationError(f"{path}: no such trace file")
    text, inner = _read_text(path)
    label = f"{path}" + (f"!{inner}" if inner else "")
    name = (inner or path.name).lower()
    if name.endswith(".csv"):
        rps = _parse_csv(text, label, column)
    else:
        if column is not None:
            raise ValidationError(f"{label}: --column/column= applies to CSV traces only")
        rps = _parse_numbers(text, label)
    if rps.size == 0:
        raise ValidationError(f"{label}: the trace holds no values; expected one request rate per second")
    n = rps.size
    lo = 0 if start is None else int(start)
    hi = n if end is None else int(end)
    if not (0 <= lo < hi <= n):
        raise ValidationError(
            f"{label}: slice [{start}:{end}] is outside the trace or empty; the trace has {n} seconds (0..{n})"
        )
    rps = rps[lo:hi]
    if damping is not None:
        if not (damping > 0 and np.isfinite(damping)):
            raise ValidationError(f"{label}: damping must be a finite number > 0, got {damping!r}")
        rps = np.floor(rps / damping)
    suffix = "" if (start is None and end is None) else f"[{lo}:{hi}]"
    suffix += "" if damping is None else f"/{damping:g}"
    return Trace(np.ascontiguousarray(rps, dtype=np.float64), label + suffix)


def _read_text(path: Path) -> tuple[str, str]:
    """The text of the file (decompressed in memory) and the archive member it came from ("" if none)."""
    name = path.name.lower()
    try:
        if name.endswith(_ARCHIVES):
            with tarfile.open(path, "r:*") as tar:
                members = [m for m in tar.getmembers() if m.isfile()]
                if len(members) != 1:
                    names = ", ".join(m.name for m in members[:5]) or "none"
                    raise ValidationError(
                        f"{path}: expected an archive holding exactly one trace file, found {len(members)} ({names})"
                    )
                handle = tar.extractfile(members[0])
                assert handle is not None  # a regular file always has a handle
                return _decode(handle.read()), members[0].name
        if name.endswith(".bz2"):
            return _decode(bz2.decompress(path.read_bytes())), path.name[:-4]
        if name.endswith(".gz"):
            return _decode(gzip.decompress(path.read_bytes())), path.name[:-3]
        return _decode(path.read_bytes()), ""
    except ValidationError:
        raise
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path}: cannot read the trace: not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                              f"at offset {exc.start}); save it as UTF-8 or plain ASCII") from None
    except (OSError, EOFError, tarfile.TarError, ValueError) as exc:
        raise ValidationError(f"{path}: cannot read the trace ({exc})") from None


def _decode(data: bytes) -> str:
    """UTF-8 text, without the byte-order mark spreadsheet programs put first (``utf-8-sig``)."""
    return data.decode("utf-8-sig")


def _parse_numbers(text: str, label: str) -> np.ndarray:
    tokens = text.split()
    try:
        rps = np.asarray(tokens, dtype=np.float64)
    except ValueError:
        for i, tok in enumerate(tokens):
            try:
                float(tok)
            except ValueError:
                line = _line_of_token(text, i)
                raise ValidationError(
                    f"{label}: line {line}, value #{i + 1}: {tok!r} is not a number; expected whitespace-separated "
                    "request rates (one per second)"
                ) from None
        raise  # pragma: no cover - numpy and float() agree on what is a number
    _check_values(rps, label, lambda i: f"line {_line_of_token(text, i)}, value #{i + 1}")
    return rps


def _line_of_token(text: str, index: int) -> int:
    """1-based line of the ``index``-th whitespace-separated token (only computed for error messages)."""
    for line_no, line in enumerate(text.splitlines(), start=1):
        count = len(line.split())
        if index < count:
            return line_no
        index -= count
    return text.count("\n") + 1


#: CSV time columns: lower-cased name -> seconds per unit (0: numbers are seconds, other values ISO 8601 date-times)
_TIME_COLUMNS = {
    **dict.fromkeys(("second", "seconds", "sec", "t", "time_s"), 1),
    **dict.fromkeys(("minute", "minutes", "time_min"), 60),  # not "min": a rate statistic (min, max)
    **dict.fromkeys(("hour", "hours", "time_h"), 3600),
    **dict.fromkeys(("time", "timestamp", "datetime", "date", "ts"), 0),
}
_UNIT_WORDS = {1: "second", 60: "minute", 3600: "hour"}
#: longest trace a CSV's time column may expand to (a year is 31.5 million seconds)
_MAX_SECONDS = 100_000_000


def _parse_csv(text: str, label: str, column: str | None) -> np.ndarray:
    import csv

    reader = csv.reader(io.StringIO(text))
    rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        raise ValidationError(f"{label}: empty CSV; expected a header row and one row per second")
    header = [h.strip() for h in rows[0][1]]
    body = rows[1:]
    time_col = _time_column(header, label)
    col, guessed = _pick_column(header, column, label, time_col)
    values = np.empty(len(body))
    for k, (row_no, row) in enumerate(body):
        cell = _cell(row, col, header, label, row_no)
        try:
            values[k] = float(cell)
        except ValueError:
            raise ValidationError(
                f"{label}: row {row_no}, column {header[col]!r}: {cell!r} is not a number; expected a request rate"
            ) from None
    _check_values(values, label, lambda i: f"row {body[i][0]}, column {header[col]!r}")
    if time_col is None or not body:
        return values
    return _by_time(values, body, header, time_col, col, guessed, label)


def _cell(row: Sequence[str], col: int, header: Sequence[str], label: str, row_no: int) -> str:
    if col >= len(row):
        raise ValidationError(f"{label}: row {row_no}: column {header[col]!r} is missing")
    return row[col].strip()


def _time_column(header: Sequence[str], label: str) -> int | None:
    """Index of the CSV's time column (None if it has none); two time columns are refused."""
    found = [i for i, h in enumerate(header) if h.lower() in _TIME_COLUMNS]
    if len(found) > 1:
        raise ValidationError(f"{label}: {len(found)} time columns ({', '.join(header[i] for i in found)}); keep one "
                              "(the time of each row) so that the rows' order and spacing are unambiguous")
    return found[0] if found else None


def _pick_column(header: Sequence[str], column: str | None, label: str, time_col: int | None) -> tuple[int, bool]:
    """The rate column, and whether it was guessed (the only column other than the time column)."""
    if column is not None:
        if column not in header:
            raise ValidationError(f"{label}: no column {column!r}; columns are {', '.join(header)}")
        if header.index(column) == time_col:
            raise ValidationError(f"{label}: column {column!r} is the time column; name the column of request rates")
        return header.index(column), False
    if "rps" in header:
        return header.index("rps"), False
    others = [i for i in range(len(header)) if i != time_col]
    if len(others) == 1:
        return others[0], True
    raise ValidationError(
        f"{label}: cannot tell which column holds the request rate (columns: {', '.join(header)}); "
        "name a column 'rps' or pass column="
    )


def _by_time(values: np.ndarray, body: Sequence[tuple[int, Sequence[str]]], header: Sequence[str], time_col: int,
             col: int, guessed: bool, label: str) -> np.ndarray:
    """The rates in time order, one per second: rows sorted by the time column, each held for its step."""
    name = header[time_col]
    cells = [_cell(row, time_col, header, label, row_no) for row_no, row in body]
    lines = [row_no for row_no, _ in body]
    unit = _TIME_COLUMNS[name.lower()]
    if unit == 0:
        numeric = all(_is_number(c) for c in cells)
        times, step = (_whole_units(cells, lines, name, 1, label), 1) if numeric else _datetimes(cells, lines, name,
                                                                                                label)
        what = "second" if numeric else f"{step} s"
    else:
        times, step, what = _whole_units(cells, lines, name, unit, label), unit, _UNIT_WORDS[unit]
    order = np.argsort(times, kind="stable")
    diffs = np.diff(times[order])

    def row(i: int) -> str:
        k = int(order[i])
        return f"row {lines[k]} ({name} {cells[k]})"

    dup = np.flatnonzero(diffs == 0)
    if dup.size:
        i = int(dup[0])
        raise ValidationError(f"{label}: {row(i)} and {row(i + 1)} give the same time; a trace needs exactly one "
                              f"row per {what}: remove or merge one of them")
    gap = np.flatnonzero(diffs != step)
    if gap.size:
        i = int(gap[0])
        gap_s, missing = int(diffs[i]), int(diffs[i] // step) - 1
        if what in _UNIT_WORDS.values():
            how = f"{missing} {what}{'s' if missing != 1 else ''} missing"
        elif gap_s % step == 0:
            how = f"{gap_s} s apart where rows are {step} s apart ({missing} row{'s' if missing != 1 else ''} missing)"
        else:
            how = f"{gap_s} s apart, not a multiple of the {step} s between rows"
        raise ValidationError(f"{label}: {row(i)} and {row(i + 1)}: {how}; a trace needs one row per {what} with no "
                              "gaps: add the missing rows (rate 0 where no requests came)")
    rps = values[order]
    if step == 1:
        return rps
    if guessed:
        raise ValidationError(
            f"{label}: cannot tell which column holds the request rate: rows are {step} s apart (column {name!r}) "
            f"and {header[col]!r} may count requests per row; if it holds requests per second (held for each row's "
            f"{step} s), name it 'rps' or pass column={header[col]!r} (--column); if it counts requests per row, "
            f"divide by {step} first"
        )
    if rps.size * step > _MAX_SECONDS:
        raise ValidationError(f"{label}: {rps.size} rows {step} s apart make {rps.size * step:,} seconds, more than "
                              f"{_MAX_SECONDS:,}; keep fewer rows")
    return np.repeat(rps, step)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _whole_units(cells: Sequence[str], lines: Sequence[int], name: str, unit: int, label: str) -> np.ndarray:
    """Seconds of each row from a column of whole seconds (minutes, hours)."""
    word = _UNIT_WORDS[unit]
    out = np.empty(len(cells), dtype=np.int64)
    for k, cell in enumerate(cells):
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value.is_integer() and abs(value) * unit < 2**62):
            raise ValidationError(f"{label}: row {lines[k]}, column {name!r}: {cell!r} is not a whole number of "
                                  f"{word}s; expected the {word} of each row (0, 1, 2, ...)")
        out[k] = int(value) * unit
    return out


def _datetimes(cells: Sequence[str], lines: Sequence[int], name: str, label: str) -> tuple[np.ndarray, int]:
    """Seconds of each row from ISO 8601 date-times (naive ones read as UTC), and the step between rows."""
    from datetime import datetime, timezone

    out = np.empty(len(cells), dtype=np.int64)
    aware: set[bool] = set()
    for k, cell in enumerate(cells):
        try:
            when = datetime.fromisoformat(cell)
        except ValueError:
            raise ValidationError(f"{label}: row {lines[k]}, column {name!r}: {cell!r} is neither a number of "
                                  "seconds nor an ISO 8601 date-time such as 2021-08-15 10:00:00") from None
        aware.add(when.tzinfo is not None)
        if len(aware) > 1:
            raise ValidationError(f"{label}: row {lines[k]}, column {name!r}: {cell!r} mixes date-times with and "
                                  "without a time zone; give every row the same kind")
        if when.microsecond:
            raise ValidationError(f"{label}: row {lines[k]}, column {name!r}: {cell!r} is not on a whole second")
        out[k] = int((when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp())
    if out.size == 1:
        raise ValidationError(f"{label}: one row with a date-time in column {name!r}: cannot tell how long its rate "
                              "lasts; give at least two rows, or a 'second' column")
    diffs = np.diff(np.sort(out))
    positive = diffs[diffs > 0]
    return out, int(positive.min()) if positive.size else 1


def _check_values(rps: np.ndarray, label: str, where: Any) -> None:
    bad = np.flatnonzero(~np.isfinite(rps) | (rps < 0))
    if bad.size:
        i = int(bad[0])
        raise ValidationError(
            f"{label}: {where(i)}: request rate {float(rps[i])!r} is not allowed; expected a finite number >= 0"
        )


def rate_segments(trace: Trace, *, compress: float = 1.0, scale: float = 1.0) -> list[tuple[float, float]]:
    """The trace as a piecewise-constant rate, time-compressed: one ``(wall seconds, requests/s)`` per trace second.

    Each trace second lasts ``1 / compress`` wall seconds at the trace's rate times ``scale``: the rate pattern
    is kept, the replay is ``compress`` times shorter and holds ``compress`` times fewer requests
    (``servopt verify --trace FILE --compress K``).

    >>> rate_segments(as_trace([10, 0, 30]), compress=2, scale=0.5)
    [(0.5, 5.0), (0.5, 0.0), (0.5, 15.0)]
    """
    if not (compress > 0 and np.isfinite(compress)):
        raise ValidationError(f"compress: expected a finite number > 0 (trace seconds per wall second), got "
                              f"{compress!r}")
    if not (scale > 0 and np.isfinite(scale)):
        raise ValidationError(f"rate scale: expected a finite number > 0, got {scale!r}")
    return [(1.0 / compress, float(r) * scale) for r in trace.rps]


def poisson_arrivals(segments: Sequence[tuple[float, float]], *, seed: int = 0) -> np.ndarray:
    """Arrival times (seconds from 0, sorted) of a Poisson process whose rate is constant on each segment.

    Segments ``(duration_s, rate)`` follow each other; a segment with rate 0 has no arrivals. Within a segment
    the count is Poisson(rate x duration) and the times are uniform (the same process as exponential gaps).
    Deterministic for a given ``seed``.

    >>> a = poisson_arrivals([(1.0, 0.0), (2.0, 50.0)], seed=1)
    >>> bool(a.min() >= 1.0 and a.max() < 3.0 and (a[1:] >= a[:-1]).all())
    True
    """
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    start = 0.0
    for k, (duration, rate) in enumerate(segments):
        if not (duration > 0 and np.isfinite(duration)) or not (rate >= 0 and np.isfinite(rate)):
            raise ValidationError(f"segment {k}: expected duration > 0 and rate >= 0 (finite), got "
                                  f"({duration!r}, {rate!r})")
        n = int(rng.poisson(rate * duration)) if rate > 0 else 0
        out.append(np.sort(start + rng.uniform(0.0, duration, n)))
        start += duration
    return np.concatenate(out) if out else np.empty(0)
