"""What the ONNX Runtime and torch profilers share: the run record, the profile's rows and files, the steady-state
runs of a point, and the checks of their arguments (:mod:`servopt.measure.profiler`,
:mod:`servopt.measure.torch_runtime`)."""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servopt.atomic import atomic_write
from servopt.exceptions import ValidationError
from servopt.measure.max_batch_search import set_oom_batch

__all__ = ["OUTPUT_SUFFIXES", "PROFILE_COLUMNS", "ProfileRun", "check_output_format", "check_positive",
           "coefficient_of_variation", "is_oom_error", "positive_ints", "progress_bar", "read_existing",
           "record_point", "steady_state", "write_rows"]

#: columns written before the ``hw.*`` ones, in this order (§2 schema plus ``repeats`` and ``oom_batch_size``).
PROFILE_COLUMNS: tuple[str, ...] = (
    "model", "variant", "hardware", "cores", "input_size", "batch_size", "latency_ms", "latency_p99_ms",
    "throughput_rps", "warmup_ms", "memory_mb", "load_time_s", "source", "repeats", "oom_batch_size",
)
#: file endings a profile may be written to: CSV, or Parquet (the formats ``servopt.profiles.load_profile`` reads)
OUTPUT_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_OOM_PATTERN = re.compile(
    r"out of memory|failed to allocate|bad_alloc|cannot allocate|alloc_failed|cudaErrorMemoryAllocation"
    r"|CUDA failure 2\b|OOM", re.IGNORECASE,
)


@dataclass
class ProfileRun:
    """What :func:`profile_model` measured.

    Attributes
    ----------
    rows : list of dict
        One dict per point (kept rows of a resumed file first), the columns of the written CSV.
    path : pathlib.Path or None
        The CSV written, if any.
    elapsed_s : float
        Wall time of the run.
    measured : int
        Points measured in this run (OOM points included).
    oom : list of dict
        The out-of-memory points of this run: ``cores``, ``input_size``, ``batch_size``, ``memory_mb`` (reached
        when it stopped) and ``reason``.
    stopped : str or None
        Why the grid was not finished (``"total_budget_s reached"``), None when it was.
    max_batch : list of dict
        With the torch profiler's ``find_max_batch``: per input size, ``input_size``, ``max_batch`` (the largest
        batch that ran), ``oom_batch`` (the smallest that ran out of memory, None when none did up to the cap)
        and ``trials`` (batch sizes tried, in order).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None
    elapsed_s: float = 0.0
    measured: int = 0
    oom: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None
    max_batch: list[dict[str, Any]] = field(default_factory=list)

    @property
    def oom_points(self) -> list[tuple[int, int, int]]:
        """``(cores, input_size, batch_size)`` of every out-of-memory point of this run."""
        return [(r["cores"], r["input_size"], r["batch_size"]) for r in self.oom]

    def to_frame(self) -> Any:
        """The rows as a :class:`pandas.DataFrame` (columns as in the CSV)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=_columns(self.rows))


def is_oom_error(exc: BaseException) -> bool:
    """True when ``exc`` is an allocation failure (``MemoryError`` or ONNX Runtime's allocation errors)."""
    return isinstance(exc, MemoryError) or bool(_OOM_PATTERN.search(str(exc)))


def check_output_format(out: Path | None) -> None:
    """Refuse an output whose ending is neither CSV nor Parquet (checked before measuring, naming ``-o``).

    >>> check_output_format(Path("p.pq"))
    >>> check_output_format(Path("p.txt"))
    Traceback (most recent call last):
    ...
    servopt.exceptions.ValidationError: -o (output) p.txt: unknown profile format '.txt'; accepted: .csv, .parquet, .pq
    """
    if out is not None and out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValidationError(f"-o (output) {out}: unknown profile format {out.suffix or '(no extension)'!r}; "
                              f"accepted: {', '.join(OUTPUT_SUFFIXES)}")


def write_rows(out: Path | None, rows: list[dict[str, Any]]) -> None:
    """Rewrite ``out`` atomically with every row, as Parquet for ``.parquet`` / ``.pq`` and CSV otherwise (no
    header-only file: nothing measured leaves nothing written)."""
    if out is not None and rows:
        if out.suffix.lower() in _PARQUET_SUFFIXES:
            _write_parquet(out, rows)
        else:
            _write_csv(out, rows)


def record_point(run: ProfileRun, rows: list[dict[str, Any]], sweep: dict[str, Any], batch: int,
                 point: dict[str, Any], out: Path | None, on_point: Callable[[dict[str, Any]], None] | None,
                 make_row: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """Add one measured point of a sweep (shared by both runtimes): its row (``make_row(point)``), or where
    ``point["oom_reason"]`` says it ran out of memory, an entry of ``run.oom`` (``sweep``, the batch, the memory
    reached, ``reason``) and ``oom_batch_size`` on the sweep's rows, which record where it stopped; then rewrite
    ``out`` and call ``on_point``. Returns the row or the entry."""
    reason = point.pop("oom_reason")
    if reason is None:
        row = make_row(point)
        rows.append(row)
    else:
        row = {**sweep, "batch_size": batch, "memory_mb": point.get("memory_mb"), "reason": reason}
        run.oom.append(row)
        set_oom_batch(rows, sweep, batch)
    run.measured += 1
    write_rows(out, rows)
    if on_point is not None:
        on_point(row)
    return row


def steady_state(run_once: Callable[[], float], repeats: int, min_repeats: int, time_budget_s: float,
                 max_cv: float | None) -> dict[str, Any]:
    """Steady-state runs of one point and their statistics (shared by the ONNX Runtime and torch profilers).

    ``run_once()`` runs the model once and returns its time in ms. Runs go on until ``repeats`` are done or
    ``time_budget_s`` has passed (at least ``min_repeats``). When the coefficient of variation is above
    ``max_cv`` the point is measured again once with twice the repeats and budget; those runs are kept and the
    point is marked ``unstable`` (1).

    Returns
    -------
    dict
        ``latency_ms`` (median), ``latency_p99_ms``, ``latency_cv``, ``repeats``, ``unstable`` (0 or 1).

    >>> times = iter([10.0, 10.0, 30.0] + [10.0] * 6)
    >>> stats = steady_state(lambda: next(times), 3, 3, 60.0, max_cv=0.1)
    >>> stats["latency_ms"], stats["repeats"], stats["unstable"], stats["latency_cv"]
    (10.0, 6, 1, 0.0)
    """
    import numpy as np

    def runs(n: int, n_min: int, budget: float) -> list[float]:
        times: list[float] = []
        deadline = time.perf_counter() + budget
        while len(times) < n and (len(times) < n_min or time.perf_counter() < deadline):
            times.append(float(run_once()))
        return times

    times = runs(repeats, min_repeats, time_budget_s)
    unstable = max_cv is not None and coefficient_of_variation(times) > max_cv
    if unstable:
        times = runs(2 * repeats, 2 * min_repeats, 2 * time_budget_s)
    return {"latency_ms": statistics.median(times), "latency_p99_ms": float(np.percentile(times, 99)),
            "latency_cv": coefficient_of_variation(times), "repeats": len(times), "unstable": int(unstable)}


def coefficient_of_variation(times: Sequence[float]) -> float:
    """Sample standard deviation / mean (0 for fewer than two values or a zero mean).

    >>> round(coefficient_of_variation([9.0, 10.0, 11.0]), 3)
    0.1
    """
    if len(times) < 2:
        return 0.0
    mean = statistics.fmean(times)
    return statistics.stdev(times) / mean if mean > 0 else 0.0


# ------------------------------------------------------------------------------------------------- files
def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    extra = sorted({k for r in rows for k in r} - set(PROFILE_COLUMNS))
    return list(PROFILE_COLUMNS) + [k for k in extra if not k.startswith("hw.")] + [k for k in extra
                                                                                     if k.startswith("hw.")]


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    import csv
    columns = _columns(rows)
    with atomic_write(path, "w", make_parents=True) as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_format(row.get(c)) for c in columns])


def _write_parquet(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=_columns(rows))
    with atomic_write(path, "wb", make_parents=True) as fh:
        frame.to_parquet(fh, index=False)


def _read_rows(path: Path) -> tuple[list[str], Iterable[dict[str, Any]]]:
    """Header and rows of a profile written by :func:`write_rows`; CSV cells parsed as :func:`_parse` does (the
    text columns kept as text), Parquet values as Python values (missing ones None)."""
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise ValidationError(f"{path}: cannot resume, not readable as Parquet ({type(exc).__name__}: "
                                  f"{str(exc)[:200]})") from None
        columns = [str(c) for c in frame.columns]
        values = {c: [None if _missing(v) else v for v in frame[c].tolist()] for c in columns}
        return columns, [{c: values[c][i] for c in columns} for i in range(len(frame))]
    import csv

    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        raws = list(reader)
        columns = list(reader.fieldnames or [])
    return columns, [{k: (text if k in _TEXT_COLUMNS else _parse(text)) for k, text in raw.items()} for raw in raws]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


_TEXT_COLUMNS = ("model", "variant", "hardware", "source")

#: settings a resumed profile must share with the run that continues it (absent in both: the default)
_RESUME_SETTINGS = {"oom_limit_mb": "--memory-limit-mb", "mem_pattern": "--mem-pattern"}


def read_existing(path: Path, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of a partial profile to resume (CSV or Parquet, as :func:`write_rows` wrote it); they must be of the
    same model, variant and hardware, and measured with the same memory limit and ONNX Runtime memory pattern (a
    point is not measured again, so rows of another setting would pass for this run's)."""
    columns, records = _read_rows(path)
    missing = {"model", "variant", "hardware", "cores", "input_size", "batch_size", "oom_batch_size"} - set(columns)
    if missing:
        raise ValidationError(f"{path}: cannot resume, columns {sorted(missing)} are missing (not a file "
                              "written by servopt profile?)")
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(records, start=1):
        where = f"row {i} (line {i + 1})" if path.suffix.lower() not in _PARQUET_SUFFIXES else f"row {i}"
        for key in ("model", "variant", "hardware"):
            if str(row[key]) != meta[key]:
                raise ValidationError(f"{path}: {where}, column {key!r}: {_shown(row[key])} differs from this "
                                      f"run's {_shown(meta[key])}; resume only a profile of the same model and "
                                      "hardware")
        for key, flag in _RESUME_SETTINGS.items():
            if not _same_setting(row.get(key), meta.get(key)):
                raise ValidationError(f"{path}: {where}, column {key!r}: {_shown(row.get(key))} differs from this "
                                      f"run's {_shown(meta.get(key))}; resume with the {flag} the profile was "
                                      "measured with (or write another file)")
        rows.append(row)
    return rows


def _shown(value: Any) -> str:
    """A cell for a message: ``empty`` for a missing value, else its repr."""
    return "empty" if value is None or value == "" else repr(value)


def _same_setting(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _parse(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def positive_ints(values: Iterable[Any], name: str) -> list[int]:
    try:
        items = list(values)
    except TypeError:
        raise ValidationError(f"{name}: expected a list of positive integers, got {values!r}") from None
    if not items:
        raise ValidationError(f"{name}: expected at least one positive integer, got none")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValidationError(f"{name}: expected positive integers, got {v!r}")
    return sorted(set(items))


def check_positive(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValidationError(f"{name}: expected a positive number, got {value!r}")


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="point", desc="profiling", dynamic_ncols=True)
