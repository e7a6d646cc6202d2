"""The canonical profile schema (SPEC §2) and its validation.

A profile is a table with one row per measurement. :func:`validate_frame` takes a raw table (cells as text from
a CSV file, or typed values from Parquet or pandas) and returns the canonical frame, or raises a
:class:`~servopt.exceptions.ValidationError` naming the file, the row, the column and what would be accepted.
Nothing is dropped: every input row is one output row.

Besides the canonical columns a profile may carry

* ``hw.*`` columns: numeric hardware-monitoring features sampled during the measurement;
* *label* columns: configuration that tells measurements apart (``precision``, ``framework``, ``concurrency``,
  ...). Every extra column holding text is a label, and so are the numeric configuration columns listed in
  :data:`NUMERIC_LABELS`. Labels are part of a point's identity;
* *measurement* columns: any other numeric extra column (``latency_p95_ms``, ``server_queue_ms``, ...), carried
  along unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError

__all__ = [
    "Column",
    "COLUMNS",
    "CANONICAL",
    "IDENTITY_COLUMNS",
    "MEASURED_COLUMNS",
    "NUMERIC_LABELS",
    "LABEL_RANGES",
    "validate_frame",
    "check_duplicates",
    "label_columns",
    "hw_columns",
    "point_columns",
]


@dataclass(frozen=True)
class Column:
    """One canonical column: its type, whether it is required, and its allowed range."""

    name: str
    kind: str  # "str" | "int" | "float"
    required: bool
    meaning: str
    minimum: float | None = None
    strict: bool = False  # minimum excluded
    maximum: float | None = None

    def accepted(self) -> str:
        """What a cell of this column may hold, in words."""
        if self.kind == "str":
            return "a non-empty text"
        what = "an integer" if self.kind == "int" else "a number"
        if self.minimum is not None:
            what += f" {'>' if self.strict else '>='} {self.minimum:g}"
        if self.maximum is not None:
            what += f" and <= {int(self.maximum):,}" if self.kind == "int" else f" and <= {self.maximum:g}"
        return what


COLUMNS: tuple[Column, ...] = (
    Column("model", "str", True, "model family, e.g. efficientnet-b0"),
    Column("variant", "str", False, "version of the model with its own accuracy/cost (default: model)"),
    Column("hardware", "str", True, "device or machine type, e.g. A100-80GB"),
    Column("cores", "float", False, "CPU cores given to one replica", minimum=0, strict=True),
    Column("input_size", "int", False, "image side in pixels", minimum=1, maximum=2**31 - 1),
    Column("batch_size", "int", True, "batch size of the measurement", minimum=1, maximum=2**31 - 1),
    Column("latency_ms", "float", True, "steady-state time to run one batch (ms)", minimum=0, strict=True),
    Column("latency_p99_ms", "float", False, "tail latency at that point (ms)", minimum=0, strict=True),
    Column("throughput_rps", "float", False, "items per second (default batch_size / latency)", minimum=0),
    Column("warmup_ms", "float", False, "time of the first batch after load (ms)", minimum=0, strict=True),
    Column("memory_mb", "float", False, "peak device memory at that point (MiB)", minimum=0),
    Column("accuracy", "float", False, "task accuracy of the variant", minimum=0, maximum=1),
    Column("load_time_s", "float", False, "time to load the variant (s)", minimum=0),
    Column("source", "str", False, "where the numbers come from"),
)

CANONICAL: dict[str, Column] = {c.name: c for c in COLUMNS}

#: columns that say *what* was measured (besides labels and batch size)
IDENTITY_COLUMNS: tuple[str, ...] = ("model", "variant", "hardware", "cores", "input_size")

#: canonical measured values; two rows of the same point must agree on them
MEASURED_COLUMNS: tuple[str, ...] = (
    "latency_ms", "latency_p99_ms", "throughput_rps", "warmup_ms", "memory_mb", "accuracy", "load_time_s",
)

#: numeric extra columns that are configuration (labels), not measurements
NUMERIC_LABELS: frozenset[str] = frozenset({
    "concurrency", "request_rate", "instances", "instances_per_gpu", "max_batch_size", "offered_load_rps",
    "sla_ms", "replicas", "run", "oom_batch_size", "oom_limit_mb",
})

#: numeric labels with a range of their own (the out-of-memory search of ``servopt profile``): a value outside it is
#: an error naming the file, row and column (``servopt fit`` would skip an ``oom_batch_size`` of 0 as no boundary)
LABEL_RANGES: dict[str, Column] = {
    "oom_batch_size": Column("oom_batch_size", "int", False, "the first batch size that ran out of memory",
                             minimum=1, maximum=2**31 - 1),
    "oom_limit_mb": Column("oom_limit_mb", "float", False, "the memory limit of the out-of-memory search (MiB)",
                           minimum=0, strict=True),
}

_MISSING_TEXT = frozenset({"", "nan", "na", "n/a", "null", "none"})

# a canonical quantity written with other units: stem -> canonical name
_STEMS = {
    "latency": "latency_ms", "latency_p99": "latency_p99_ms", "throughput": "throughput_rps",
    "warmup": "warmup_ms", "memory": "memory_mb", "load_time": "load_time_s",
}
_UNITS = ("us", "usec", "µs", "ns", "s", "sec", "secs", "seconds", "ms", "msec", "min", "minutes", "kb", "kib",
          "mb", "mib", "gb", "gib", "bytes", "b", "rps", "qps", "ips", "fps", "per_s", "per_sec", "img_s")
_UNIT_RE = re.compile(r"^({})(?:_({}))?$".format("|".join(sorted(_STEMS, key=len, reverse=True)), "|".join(_UNITS)))
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class RowPlaces(Sequence[str]):
    """``"row 1"``, ``"row 2"``, ... made on demand (a profile of 1.5 M rows needs none unless a message does)."""

    def __init__(self, n: int, prefix: str = "row") -> None:
        self.n, self.prefix = n, prefix

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return f"{self.prefix} {i % self.n + 1}"


def _quote(col: str) -> str:
    """A column name for messages: quoted, unless it is already a label such as ``'x' (file column 'y')``."""
    return col if col.startswith("'") else repr(col)


def _label(col: str, origin: Mapping[str, str] | None) -> str:
    """``'latency_ms'``, or ``'latency_ms' (file column 'model_latencies_avg')`` for imported columns."""
    if origin and col in origin and origin[col] != col:
        return f"{col!r} (file column {origin[col]!r})"
    return repr(col)


def _num(value: Any) -> str:
    return "empty" if pd.isna(value) else f"{float(value):g}"


def _show(value: Any) -> str:
    if isinstance(value, np.generic):  # np.int64(-1) -> -1: messages show plain Python values
        value = value.item()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_name(name: Any, source: str) -> None:
    """Reject column names that are canonical quantities in other units, or misspelled canonical names."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"{source}: a column has an empty or non-text name ({_show(name)}); "
                              "every column needs a name")
    if name in CANONICAL or name.startswith("hw."):
        if name == "hw.":
            raise ValidationError(f"{source}: column 'hw.' needs a feature name after 'hw.', e.g. 'hw.gpu_util'")
        return
    lower = name.lower()
    if lower in CANONICAL:
        raise ValidationError(f"{source}: column {name!r}: column names are lower case; rename it to {lower!r}")
    match = _UNIT_RE.match(lower)
    if match:
        canonical = _STEMS[match.group(1)]
        unit = match.group(2)
        what = f"has units servopt does not take ({unit!r})" if unit else "gives no units"
        raise ValidationError(
            f"{source}: column {name!r} {what}; servopt accepts {canonical!r} "
            f"({CANONICAL[canonical].meaning}): convert the values and rename the column")
    if not _NAME_RE.match(name):
        raise ValidationError(f"{source}: column {name!r}: names may hold letters, digits, '_', '.', '-' only "
                              "and must not start with a digit")


def _all_text(values: pd.Series) -> bool:
    """Whether every cell is a ``str`` (CSV cells): the vectorised paths below apply."""
    if len(values) == 0:
        return False
    if isinstance(values.dtype, pd.StringDtype):  # pandas' own strings (read_csv): vectorised in Arrow
        return not bool(values.isna().any())
    return values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string"


def _text_missing(stripped: pd.Series) -> np.ndarray:
    """Missing-cell mask of stripped text cells (the words of ``_MISSING_TEXT``, any case)."""
    short = stripped.str.len().to_numpy() <= 4  # every missing word is short: only those are lower-cased
    out = np.zeros(len(stripped), dtype=bool)
    if short.any():
        out[short] = stripped[short].str.lower().isin(_MISSING_TEXT).to_numpy()
    return out


def missing_mask(values: pd.Series) -> np.ndarray:
    if _all_text(values):  # vectorised: 1.5 M cells in a fraction of a second
        return _text_missing(values.str.strip())
    if values.dtype.kind in "iuf":
        return np.isnan(values.to_numpy(dtype=float))

    def missing(v: Any) -> bool:
        if v is None:
            return True
        if isinstance(v, float) and math.isnan(v):
            return True
        if isinstance(v, str) and v.strip().lower() in _MISSING_TEXT:
            return True
        return v is pd.NA or v is pd.NaT
    return np.fromiter((missing(v) for v in values), dtype=bool, count=len(values))


def parse_numbers(values: pd.Series, col: str, where: Sequence[str], source: str, accepted: str) -> np.ndarray:
    """Parse a column to float64 (NaN where missing); raise on the first cell that is not a finite number.

    ``col`` is the column's name as the user knows it (see :func:`_label`).
    """
    fast = _parse_numbers_fast(values)
    if fast is not None:
        return fast
    out = np.full(len(values), np.nan)
    missing = missing_mask(values)
    for i, v in enumerate(values):
        if missing[i]:
            continue
        if isinstance(v, (bool, np.bool_)):
            number = math.nan
        elif isinstance(v, (int, float, np.integer, np.floating)):
            number = float(v)
        elif isinstance(v, str):
            try:
                number = float(v.strip())
            except ValueError:
                number = math.nan
        else:
            number = math.nan
        if not math.isfinite(number):
            raise ValidationError(f"{source}: {where[i]}, column {_quote(col)}: expected {accepted}, got "
                                  f"{_show(v)}")
        out[i] = number
    return out


def _parse_numbers_fast(values: pd.Series) -> np.ndarray | None:
    """A column's numbers parsed in one pass, or None when some cell needs the cell-by-cell path (and its message).

    Numeric columns (Parquet, pandas) are taken as they are; text cells (CSV) are stripped, missing words masked
    and the rest converted by numpy (the same correctly rounded conversion as ``float``). Anything unusual (a
    cell numpy cannot read, a non-finite number, booleans, mixed types) returns None.
    """
    if values.dtype.kind in "iuf":
        out = values.to_numpy(dtype=float)
        present = ~np.isnan(out)
        return out if np.isfinite(out[present]).all() else None
    if not _all_text(values):
        return None
    stripped = values.str.strip()
    missing = _text_missing(stripped)
    out = np.full(len(values), np.nan)
    try:
        parsed = _text_to_float(stripped[~missing])
    except (ValueError, TypeError, OverflowError):
        return None
    if not np.isfinite(parsed).all():
        return None
    out[~missing] = parsed
    return out


def _text_to_float(cells: pd.Series) -> np.ndarray:
    """Text cells (stripped, none missing) as float64, correctly rounded like ``float``; ValueError if one is not
    a plain decimal number (the caller then reads the column cell by cell).

    Arrow's cast (the fast_float algorithm: correctly rounded) for Arrow strings, numpy's otherwise; both accept
    fewer spellings than ``float`` (never more), so a refusal only sends the column to the careful path.
    """
    if isinstance(cells.dtype, pd.StringDtype) and cells.dtype.storage == "pyarrow":
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            array = cells.array._pa_array if hasattr(cells.array, "_pa_array") else pa.array(cells)
            return np.asarray(pc.cast(array, pa.float64()).to_numpy(), dtype=np.float64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, AttributeError):
            raise ValueError("not plain numbers") from None
    return cells.to_numpy(dtype=object).astype(str).astype(np.float64)


def parse_texts(values: pd.Series, col: str, where: Sequence[str], source: str) -> list[Any]:
    """Text cells stripped; None where missing; raise on a cell that is not text or a plain number."""
    if _all_text(values):  # vectorised
        stripped = values.str.strip()
        return list(np.where(_text_missing(stripped), None, stripped.to_numpy(dtype=object)))
    missing = missing_mask(values)
    out: list[Any] = []
    for i, v in enumerate(values):
        if missing[i]:
            out.append(None)
        elif isinstance(v, str):
            out.append(v.strip())
        elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            out.append(str(int(v)))
        elif isinstance(v, (float, np.floating)) and float(v).is_integer():
            out.append(str(int(v)))
        else:
            raise ValidationError(f"{source}: {where[i]}, column {_quote(col)}: expected a text, got {_show(v)}")
    return out


def _check_range(values: np.ndarray, spec: Column, where: Sequence[str], source: str, raw: pd.Series,
                 label: str) -> None:
    bad = np.zeros(len(values), dtype=bool)
    present = ~np.isnan(values)
    if spec.minimum is not None:
        bad |= present & ((values <= spec.minimum) if spec.strict else (values < spec.minimum))
    if spec.maximum is not None:
        bad |= present & (values > spec.maximum)
    if spec.kind == "int":
        bad |= present & (values != np.round(values))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError(
            f"{source}: {where[i]}, column {label}: expected {spec.accepted()}, got {_show(raw.iloc[i])}")


def label_columns(frame: pd.DataFrame) -> list[str]:
    """Extra columns that are configuration labels (text columns and :data:`NUMERIC_LABELS`)."""
    out = []
    for col in frame.columns:
        if col in CANONICAL or col.startswith("hw."):
            continue
        if col in NUMERIC_LABELS or not pd.api.types.is_numeric_dtype(frame[col]):
            out.append(col)
    return out


def hw_columns(frame: pd.DataFrame) -> list[str]:
    """The ``hw.*`` hardware-monitoring feature columns."""
    return [c for c in frame.columns if c.startswith("hw.")]


def point_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that identify one measured point: identity columns present, labels, and ``batch_size``."""
    return [c for c in IDENTITY_COLUMNS if c in frame.columns] + label_columns(frame) + ["batch_size"]


def validate_frame(raw: pd.DataFrame, source: str, where: Sequence[str] | None = None,
                   origin: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Validate a raw profile table and return it in the canonical schema.

    Parameters
    ----------
    raw : pandas.DataFrame
        One row per measurement; cells may be text (from CSV) or typed values.
    source : str
        Name used in error messages (usually the file path).
    where : sequence of str, optional
        Location of each row for error messages (e.g. ``"row 3 (line 4)"``); default ``"row N"``.
    origin : mapping, optional
        servopt column -> the column it came from in an imported file, so messages name both.

    Returns
    -------
    pandas.DataFrame
        Canonical frame: typed columns, ``variant`` defaulting to ``model``, ``throughput_rps`` defaulting to
        ``batch_size / latency``, ``source`` defaulting to ``source``. Same rows, same order.

    Raises
    ------
    ValidationError
        Naming the file, row and column, and what would be accepted.

    Examples
    --------
    >>> import pandas as pd
    >>> raw = pd.DataFrame({"model": ["m"], "hardware": ["T4"], "batch_size": ["8"], "latency_ms": ["4.0"]})
    >>> float(validate_frame(raw, "p.csv").loc[0, "throughput_rps"])
    2000.0
    """
    if not isinstance(raw, pd.DataFrame):
        raise ValidationError(f"{source}: expected a table (pandas DataFrame), got {type(raw).__name__}")
    n = len(raw)
    where = where if where is not None else RowPlaces(n)
    columns = list(raw.columns)
    seen: set[str] = set()
    for name in columns:
        _check_name(name, source)
        if name in seen:
            raise ValidationError(f"{source}: column {name!r} appears twice; keep one")
        seen.add(name)
    missing = [c.name for c in COLUMNS if c.required and c.name not in seen]
    if missing:
        raise ValidationError(
            f"{source}: missing required column(s) {', '.join(map(repr, missing))}; a profile needs "
            f"{', '.join(c.name for c in COLUMNS if c.required)} (found: {', '.join(map(str, columns)) or 'none'})")
    if n == 0:
        raise ValidationError(f"{source}: the profile has a header but no rows; it needs one row per measurement")

    out: dict[str, Any] = {}
    for spec in COLUMNS:
        if spec.name not in seen:
            continue
        cells = raw[spec.name].reset_index(drop=True)
        label = _label(spec.name, origin)
        if spec.kind == "str":
            texts = parse_texts(cells, label, where, source)
            if spec.required:
                for i, t in enumerate(texts):
                    if t is None:
                        raise ValidationError(
                            f"{source}: {where[i]}, column {label}: expected {spec.accepted()}, got an empty cell")
            out[spec.name] = texts
        else:
            values = parse_numbers(cells, label, where, source, spec.accepted())
            if spec.required and np.isnan(values).any():
                i = int(np.argmax(np.isnan(values)))
                raise ValidationError(
                    f"{source}: {where[i]}, column {label}: expected {spec.accepted()}, got an empty cell")
            _check_range(values, spec, where, source, cells, label)
            out[spec.name] = values

    extras = [c for c in columns if c not in CANONICAL]
    for col in extras:
        cells = raw[col].reset_index(drop=True)
        label = _label(col, origin)
        if col.startswith("hw."):
            out[col] = parse_numbers(cells, label, where, source, "a finite number (hardware feature)")
            continue
        missing_cells = missing_mask(cells)
        try:
            numeric = parse_numbers(cells, label, where, source, "a number")
        except ValidationError:
            if col in NUMERIC_LABELS:
                raise
            out[col] = parse_texts(cells, label, where, source)  # a text label
        else:
            if col in LABEL_RANGES:
                _check_range(numeric, LABEL_RANGES[col], where, source, cells, label)
            out[col] = numeric if (~missing_cells).any() or col in NUMERIC_LABELS else parse_texts(cells, label, where,
                                                                                               source)

    frame = pd.DataFrame(out)
    for col in ("model", "hardware", "variant", "source"):
        if col in frame:
            frame[col] = frame[col].astype(object)
    if "variant" not in frame:
        frame.insert(1, "variant", frame["model"])
    else:
        frame["variant"] = frame["variant"].where(frame["variant"].notna(), frame["model"])
    for col in ("input_size", "batch_size"):
        if col in frame and not frame[col].isna().any():
            frame[col] = frame[col].astype(np.int64)
    throughput = frame["batch_size"] * 1000.0 / frame["latency_ms"]
    if "throughput_rps" in frame:
        frame["throughput_rps"] = frame["throughput_rps"].where(frame["throughput_rps"].notna(), throughput)
    else:
        frame["throughput_rps"] = throughput
    if "source" in frame:
        frame["source"] = frame["source"].where(frame["source"].notna(), str(source))
    else:
        frame["source"] = str(source)
    order = [c.name for c in COLUMNS if c.name in frame] + [c for c in frame.columns if c not in CANONICAL]
    frame = frame[order]
    check_duplicates(frame, source, where)
    return frame


def check_duplicates(frame: pd.DataFrame, source: str, where: Sequence[str]) -> None:
    """Raise when two rows measure the same point with different values.

    The point is (identity columns, labels, batch size); the values compared are the canonical measurements.
    """
    keys = point_columns(frame)
    measured = [c for c in MEASURED_COLUMNS if c in frame.columns]
    key_frame = frame[keys].astype(object).where(frame[keys].notna(), "<missing>")
    dup = key_frame.duplicated(keep=False).to_numpy()
    if not dup.any():
        return
    groups: dict[tuple, int] = {}
    for i in np.flatnonzero(dup):
        key = tuple(key_frame.iloc[i])
        first = groups.setdefault(key, int(i))
        if first == i:
            continue
        for col in measured:
            a, b = frame[col].iloc[first], frame[col].iloc[i]
            same = (pd.isna(a) and pd.isna(b)) or (not pd.isna(a) and not pd.isna(b) and math.isclose(
                float(a), float(b), rel_tol=1e-9, abs_tol=0.0))
            if not same:
                point = ", ".join(f"{k}={v}" for k, v in zip(keys, key) if v != "<missing>")
                raise ValidationError(
                    f"{source}: {where[first]} and {where[i]} measure the same point ({point}) with different "
                    f"{col!r} ({_num(a)} vs {_num(b)}); keep one row per point, or tell the rows apart with a label "
                    "column such as 'run' or 'precision'")
