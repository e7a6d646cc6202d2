"""Request-rate traces: per-second request counts read from the formats the reference experiments use.

A trace is one non-negative number per second: the request rate (RPS) of that second. Three layouts are read:

* whitespace-separated numbers, on one line or one per line (InfAdapter's 21-minute window
  ``twitter_window_day15_min82-103_per_second.txt``, and ``workload.txt`` of the 22-day Twitter trace);
* CSV with a header, one row per second; the rate is the column ``rps`` unless another is named (IPA's windows
  ``twitter_slice_*_damping8.csv`` have ``second,rps``);
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
        A ``.txt`` (whitespace-separated numbers), ``.csv`` (header row, one row per second) or compressed file
        (see the module docstring).
    start, end : int, optional
        Keep the seconds ``[start, end)`` only (IPA's ``workload_config`` slices).
    damping : float, optional
        Divide every rate by this factor and round down, as IPA's load generator does (``int(x / damping)``).
    column : str, optional
        CSV column holding the rate; default ``rps``, or the only column other than ``second``/``time``.

    Returns
    -------
    Trace

    Raises
    ------
    ValidationError
        Missing file, unreadable archive, non-numeric, negative or non-finite value (naming the line or row and
        column), unknown column, empty slice.
    """
    path = Path(path)
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
                return handle.read().decode("ascii"), members[0].name
        if name.endswith(".bz2"):
            return bz2.decompress(path.read_bytes()).decode("ascii"), path.name[:-4]
        if name.endswith(".gz"):
            return gzip.decompress(path.read_bytes()).decode("ascii"), path.name[:-3]
        return path.read_text(encoding="ascii"), ""
    except ValidationError:
        raise
    except (OSError, EOFError, tarfile.TarError, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(f"{path}: cannot read the trace ({exc})") from None


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


def _parse_csv(text: str, label: str, column: str | None) -> np.ndarray:
    import csv

    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise ValidationError(f"{label}: empty CSV; expected a header row and one row per second")
    header = [h.strip() for h in rows[0]]
    col = _pick_column(header, column, label)
    values = np.empty(len(rows) - 1)
    for k, row in enumerate(rows[1:]):
        row_no = k + 2
        if col >= len(row):
            raise ValidationError(f"{label}: row {row_no}: column {header[col]!r} is missing")
        cell = row[col].strip()
        try:
            values[k] = float(cell)
        except ValueError:
            raise ValidationError(
                f"{label}: row {row_no}, column {header[col]!r}: {cell!r} is not a number; expected a request rate"
            ) from None
    _check_values(values, label, lambda i: f"row {i + 2}, column {header[col]!r}")
    return values


def _pick_column(header: Sequence[str], column: str | None, label: str) -> int:
    if column is not None:
        if column not in header:
            raise ValidationError(f"{label}: no column {column!r}; columns are {', '.join(header)}")
        return header.index(column)
    if "rps" in header:
        return header.index("rps")
    others = [i for i, h in enumerate(header) if h.lower() not in ("second", "seconds", "time", "time_s", "t")]
    if len(others) == 1:
        return others[0]
    raise ValidationError(
        f"{label}: cannot tell which column holds the request rate (columns: {', '.join(header)}); "
        "name a column 'rps' or pass column="
    )


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
