"""Importers: other tools' output restated as servopt profiles.

* perf_analyzer ``-f`` CSV (times in µs, one row per concurrency or request rate), here;
* Triton Model Analyzer ``metrics-model-inference.csv`` and ``metrics-model-gpu.csv``
  (:mod:`servopt.profiles._model_analyzer`, which shares this module's cell helpers).

The research systems' published profiles (InfAdapter, IPA) are read by :mod:`servopt.profiles._papers`.

Every importer reads its file with :func:`read_csv_cells`, maps columns to the canonical schema, takes the
metadata the file lacks (model, hardware, batch size, ...) from its arguments and validates the result with
:func:`validate_frame`, so errors name the file, the row and the column. Unknown columns are rejected rather than
silently dropped.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError
from servopt.profiles._io import ProfileTable, read_csv_cells
from servopt.profiles._schema import check_duplicates, parse_numbers, validate_frame

__all__ = ["read_perf_analyzer", "batch_size_from_name"]

#: file names that say the client batch size (``-b``) of a perf_analyzer run: ``resnet_b8.csv``,
#: ``resnet-b8.csv``, ``b8.csv``, ``resnet_b8_run2.csv``, ``resnet_bs8.csv``, ``resnet_batch8.csv``, ...
_BATCH_IN_NAME = (
    re.compile(r"(?:^|[_\-.])bs?(\d+)(?=$|[_\-.])", re.IGNORECASE),  # a part b8 / bs8 between _ - . or the ends
    re.compile(r"batch(?:[_\-]?size)?[_\-]?(\d+)(?!\d)", re.IGNORECASE),  # *batch8*, *batch_8*, *batch-size-8*
)

# perf_analyzer -f header -> (servopt column, factor); times are µs
_PA_COLUMNS: dict[str, tuple[str, float]] = {
    "Concurrency": ("concurrency", 1.0),
    "Request Rate": ("request_rate", 1.0),
    "Inferences/Second": ("throughput_rps", 1.0),
    "Response Throughput": ("response_throughput_rps", 1.0),
    "Client Send": ("client_send_ms", 1e-3),
    "Network+Server Send/Recv": ("network_server_ms", 1e-3),
    "Server Queue": ("server_queue_ms", 1e-3),
    "Server Compute Input": ("server_compute_input_ms", 1e-3),
    "Server Compute Infer": ("server_compute_infer_ms", 1e-3),
    "Server Compute Output": ("server_compute_output_ms", 1e-3),
    "Server Cache Hit": ("server_cache_hit_ms", 1e-3),
    "Server Cache Miss": ("server_cache_miss_ms", 1e-3),
    "Client Recv": ("client_recv_ms", 1e-3),
    "Avg latency": ("latency_avg_ms", 1e-3),
    "request/response": ("client_request_response_ms", 1e-3),
    "send/recv": ("client_request_response_ms", 1e-3),
    "response wait": ("client_response_wait_ms", 1e-3),
}
#: bytes in a MiB: servopt's ``*_mb`` columns are MiB (``servopt profile``'s ``memory_mb``, ``--memory-limit-mb``)
_MIB = float(2**20)

# per-GPU cells "uuid:value;uuid:value;" -> (servopt column, how to combine, factor); memory cells are bytes
_PA_GPU_COLUMNS: dict[str, tuple[str, str, float]] = {
    "Avg GPU Utilization": ("hw.gpu_utilization_pct", "mean", 100.0),
    "Avg GPU Power Usage": ("hw.gpu_power_w", "sum", 1.0),
    "Max GPU Memory Usage": ("memory_mb", "sum", 1 / _MIB),
    "Total GPU Memory": ("hw.gpu_memory_total_mb", "sum", 1 / _MIB),
}
_PA_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?) latency$")


def _metadata(n: int, *, model: str | None, hardware: str | None, variant: str | None, input_size: int | None,
              cores: float | None, source: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, value in (("model", model), ("variant", variant), ("hardware", hardware),
                       ("input_size", input_size), ("cores", cores), ("source", source)):
        if value is not None:
            meta[key] = [value] * n
    return meta


def _require(header: Sequence[str], needed: Iterable[str], path: Path, what: str) -> None:
    missing = [c for c in needed if c not in header]
    if missing:
        raise ValidationError(f"{path}: missing column(s) {', '.join(map(repr, missing))}; {what} "
                              f"(found: {', '.join(header)})")


def _column(rows: list[list[str]], header: Sequence[str], name: str) -> pd.Series:
    i = header.index(name)
    return pd.Series([r[i] for r in rows], dtype=object)


#: decimal arithmetic wide enough that a cell (at most 17 digits) times a factor is exact before it becomes a float
_EXACT = decimal.Context(prec=80)


def _exact(number: Any, factor: float = 1.0) -> float:
    """``number`` x ``factor`` computed on the decimals they print as, then rounded once to a float: 5419 µs x 1e-3
    is 5.419 (a float product gives 5.4190000000000005, and servopt's exact checks count numbers as the decimals
    they print as). ``number`` is a cell's text or a number (its shortest repr).

    >>> _exact("5419", 1e-3), _exact("7100", 1e-3), _exact(" 9 ", 1e-3), _exact(0.07, 100.0)
    (5.419, 7.1, 0.009, 7.0)
    """
    text = number.strip() if isinstance(number, str) else repr(float(number))
    return float(_EXACT.multiply(decimal.Decimal(text), decimal.Decimal(repr(float(factor)))))


def _required_numbers(cells: pd.Series, col: str, where: Sequence[str], path: Path, accepted: str,
                      factor: float = 1.0) -> np.ndarray:
    """The cells as numbers (an empty one refused), times ``factor`` exactly in decimal (:func:`_exact`)."""
    values = parse_numbers(cells, col, where, str(path), accepted)
    if np.isnan(values).any():
        i = int(np.argmax(np.isnan(values)))
        raise ValidationError(f"{path}: {where[i]}, column {col!r}: expected {accepted}, got an empty cell")
    if factor == 1.0:
        return values
    return np.array([_exact(c if isinstance(c, str) else v, factor) for c, v in zip(cells, values)], dtype=float)


def _per_gpu(cells: pd.Series, col: str, where: Sequence[str], path: Path, how: str, factor: float) -> np.ndarray:
    """perf_analyzer's ``uuid:value;uuid:value;`` cells combined over GPUs."""
    out = np.full(len(cells), np.nan)
    for i, cell in enumerate(cells):
        text = str(cell).strip()
        if not text:
            continue
        values = []
        for part in filter(None, (p.strip() for p in text.split(";"))):
            uuid, sep, value = part.rpartition(":")
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not sep or not uuid or not math.isfinite(number) or number < 0:
                raise ValidationError(
                    f"{path}: {where[i]}, column {col!r}: expected per-GPU values 'uuid:value;' with non-negative "
                    f"numbers, got {text[:60]!r}")
            values.append(decimal.Decimal(value.strip()))
        if values:  # in decimal, as the file prints them: 70.1 + 69.3 W is 139.4, not 139.39999999999998
            total = sum(values, decimal.Decimal(0))
            combined = total if how == "sum" else _EXACT.divide(total, len(values))
            out[i] = _exact(str(combined), factor)
    return out


def batch_size_from_name(path: str | Path) -> int | None:
    """The client batch size a perf_analyzer file's name states, or None.

    The name's stem has a part ``b<N>`` or ``bs<N>`` between ``_``, ``-``, ``.`` or its ends, or holds
    ``batch<N>``, ``batch_<N>``, ``batch-<N>`` or ``batch_size_<N>`` anywhere (any case). When the patterns give two
    different numbers the name is ambiguous and None is returned (:func:`read_perf_analyzer` then says which numbers
    conflict).

    Examples
    --------
    >>> [batch_size_from_name(n) for n in ("r50_b8.csv", "r50-b16.csv", "batch4_run2.csv", "results.csv")]
    [8, 16, 4, None]
    """
    found = _batch_sizes_in_name(path)
    return found[0] if len(found) == 1 else None


def _batch_sizes_in_name(path: str | Path) -> list[int]:
    """Every batch size the stem of ``path`` states (:data:`_BATCH_IN_NAME`), distinct, in increasing order
    (not the order they appear in)."""
    stem = Path(path).stem
    return sorted({int(m.group(1)) for rx in _BATCH_IN_NAME for m in rx.finditer(stem)})


def read_perf_analyzer(path: str | Path | Sequence[str | Path], *, model: str, hardware: str,
                       batch_size: int | Sequence[int] | None = None, variant: str | None = None,
                       input_size: int | None = None, cores: float | None = None,
                       source: str | None = None) -> ProfileTable:
    """Read perf_analyzer's ``-f`` CSV (one row per concurrency or request rate), or several, as one profile.

    Times in the file are µs and become ms. ``Inferences/Second`` already counts the batch and becomes
    ``throughput_rps``. ``latency_ms`` is the client's mean latency (``Avg latency``, from ``--verbose-csv``) or,
    without it, the median (``p50 latency``); ``pNN latency`` become ``latency_pNN_ms`` (``latency_p99_ms``), the
    server's queue and compute times become ``server_*_ms`` columns, GPU metrics (``--collect-metrics``) become
    ``memory_mb`` (sum over GPUs; bytes / 2**20, MiB) and ``hw.gpu_*`` features. The load level is a label column
    (``concurrency`` or ``request_rate``).

    perf_analyzer does not record the client batch size (``-b``): ``batch_size`` gives it, one per file in the
    order of ``path`` (an int applies to every file); without it each file's name must state it
    (:func:`batch_size_from_name`: ``resnet_b8.csv``, ``resnet-b8.csv``, ``resnet_batch8.csv``, ...).

    Raises
    ------
    ValidationError
        A column perf_analyzer does not write, a missing load or latency column, a cell that is not a number, a
        file whose batch size is neither given nor in its name, as many batch sizes as files not given, or two
        files measuring the same point (batch size and load) differently.

    Examples
    --------
    >>> read_perf_analyzer(["r50_b1.csv", "r50_b8.csv"], model="resnet50", hardware="T4")  # doctest: +SKIP
    """
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    if not paths:
        raise ValidationError("read_perf_analyzer: no files given")
    sizes = _pa_batch_sizes(paths, batch_size)
    frames: list[pd.DataFrame] = []
    wheres: list[str] = []
    for one, size in zip(paths, sizes):
        frames.append(_read_one_perf_analyzer(one, model=model, hardware=hardware, batch_size=size,
                                              variant=variant, input_size=input_size, cores=cores, source=source))
        wheres.extend(f"{one}: row {i + 1}" for i in range(len(frames[-1])))
    if len(frames) == 1:
        return ProfileTable(frames[0], paths)
    frame = pd.concat(frames, ignore_index=True, sort=False)
    check_duplicates(frame, "perf_analyzer files", wheres)
    return ProfileTable(frame, paths)


def _pa_batch_sizes(paths: Sequence[Path], batch_size: int | Sequence[int] | None) -> list[int]:
    if batch_size is None:
        give = ("give it (--batch-size 8, or one per file in order: --batch-size 1,8,32; batch_size= in Python) or "
                "name the file like 'resnet_b8.csv', 'resnet-b8.csv' or 'resnet_batch8.csv'")
        sizes = []
        for p in paths:
            found = _batch_sizes_in_name(p)
            if len(found) > 1:
                raise ValidationError(
                    f"{p}: perf_analyzer does not record the client batch size (-b), and the file name gives "
                    f"{len(found)} batch sizes that conflict ({', '.join(map(str, found))}); {give}, stating one")
            if not found:
                raise ValidationError(
                    f"{p}: perf_analyzer does not record the client batch size (-b), and the file name does not "
                    f"state it; {give}")
            sizes.append(found[0])
        return sizes
    if isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool):
        sizes = [int(batch_size)] * len(paths)
    elif isinstance(batch_size, Sequence) and not isinstance(batch_size, str):
        sizes = list(batch_size)
        if len(sizes) != len(paths):
            raise ValidationError(
                f"batch sizes: {len(sizes)} given ({', '.join(map(str, sizes))}) for {len(paths)} perf_analyzer "
                "files; give one per file, in the same order")
    else:
        raise ValidationError(f"batch_size: expected an integer >= 1 or one per file, got {batch_size!r}")
    for b in sizes:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValidationError(f"batch size {b!r}: expected an integer >= 1 (perf_analyzer's -b)")
    return [int(b) for b in sizes]


def _read_one_perf_analyzer(path: Path, *, model: str, hardware: str, batch_size: int, variant: str | None,
                            input_size: int | None, cores: float | None, source: str | None) -> pd.DataFrame:
    path = Path(path)
    header, rows, where = read_csv_cells(path)
    if "Concurrency" not in header and "Request Rate" not in header:
        raise ValidationError(f"{path}: not a perf_analyzer -f file: it needs a 'Concurrency' or 'Request Rate' "
                              f"column (found: {', '.join(header)})")
    _require(header, ["Inferences/Second"], path, "perf_analyzer -f writes it")
    if not rows:
        raise ValidationError(f"{path}: the file has a header but no rows; expected one row per concurrency")
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name in header:
        cells = _column(rows, header, name)
        if name in _PA_COLUMNS:
            column, factor = _PA_COLUMNS[name]
            origin[column] = name
            accepted = "a number" if factor == 1.0 else "a number of microseconds"
            raw[column] = _required_numbers(cells, name, where, path, accepted, factor)
            if column in ("concurrency", "request_rate"):
                _positive(raw[column], cells, name, where, path, "a number > 0 (the load perf_analyzer drove)")
        elif name in _PA_GPU_COLUMNS:
            column, how, factor = _PA_GPU_COLUMNS[name]
            origin[column] = name
            raw[column] = _per_gpu(cells, name, where, path, how, factor)
        elif (match := _PA_PERCENTILE.match(name)) is not None:
            pct = match.group(1).replace(".", "_")
            column = "latency_p99_ms" if pct == "99" else f"latency_p{pct}_ms"
            origin[column] = name
            raw[column] = _required_numbers(cells, name, where, path, "a number of microseconds", 1e-3)
        else:
            raise ValidationError(
                f"{path}: column {name!r} is not a perf_analyzer -f column servopt knows (known: "
                f"{', '.join(list(_PA_COLUMNS) + list(_PA_GPU_COLUMNS))}, 'pNN latency'); remove it")
    if "latency_avg_ms" in raw:
        raw["latency_ms"] = raw.pop("latency_avg_ms")
        origin["latency_ms"] = origin.pop("latency_avg_ms")
    elif "latency_p50_ms" in raw:
        raw["latency_ms"] = raw["latency_p50_ms"]
        origin["latency_ms"] = origin["latency_p50_ms"]
    else:
        raise ValidationError(f"{path}: needs 'Avg latency' (perf_analyzer --verbose-csv) or 'p50 latency' to give "
                              "the latency of one request")
    n = len(rows)
    frame = pd.DataFrame({**_metadata(n, model=model, hardware=hardware, variant=variant, input_size=input_size,
                                      cores=cores, source=source or f"{path} (perf_analyzer)"),
                          "batch_size": [batch_size] * n, **raw})
    return validate_frame(frame, str(path), where, origin)


def _positive(values: np.ndarray, cells: pd.Series, name: str, where: Sequence[str], path: Path,
              accepted: str) -> np.ndarray:
    """``values`` (read from ``cells``), refused at the first that is not > 0, naming the file's cell."""
    bad = np.flatnonzero(~(values > 0))
    if bad.size:
        i = int(bad[0])
        raise ValidationError(f"{path}: {where[i]}, column {name!r}: expected {accepted}, got {cells.iloc[i]!r}")
    return values


