"""Importers of the research systems' published profiles, restated as servopt profiles.

* InfAdapter's CPU capacity profile (``capacity_result_*.csv``);
* IPA's CPU profiling fragments (``ipa/profiles/*.csv``; times in seconds).

As the tools' importers (:mod:`servopt.profiles._importers`), each reads its file with :func:`read_csv_cells`, maps
columns to the canonical schema and validates the result with :func:`validate_frame`, so errors name the file, the
row and the column; unknown columns are rejected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError
from servopt.profiles._importers import _column, _require, _required_numbers
from servopt.profiles._io import ProfileTable, read_csv_cells
from servopt.profiles._schema import parse_numbers, parse_texts, validate_frame

__all__ = ["read_infadapter_capacity", "read_ipa_profile"]


_INFADAPTER_COLUMNS = ("REPLICA", "HARDWARE", "CPU", "MEM", "ARCH", "BATCH", "NUM_BATCH_THREADS",
                       "MAX_ENQUEUED_BATCHES", "INTRA_OP_PARALLELISM", "INTER_OP_PARALLELISM", "SLA", "p99_latency",
                       "capacity", "saturation_tp", "timestamp")


def read_infadapter_capacity(path: str | Path, sla_ms: float = 750, *, model: str = "resnet",
                             source: str | None = None) -> ProfileTable:
    """InfAdapter's CPU capacity profile (``capacity_result_*.csv``) at one latency SLA as canonical rows.

    One row per (variant, cores): ``variant`` = ``resnet<ARCH>``, ``model`` = ``resnet``, ``hardware`` = the
    file's ``HARDWARE`` (``cpu``), ``cores`` = ``CPU``, ``batch_size`` = ``BATCH``, ``throughput_rps`` = ``capacity``
    (the highest RPS whose P99 stayed within the SLA), ``latency_p99_ms`` = ``p99_latency`` (empty in a few rows),
    ``saturation_rps`` = ``saturation_tp``, ``sla_ms`` and ``memory_limit`` as labels. ``latency_ms`` is derived:
    the service time of one batch, ``cores * batch / saturation_tp`` (TF Serving runs one batch per core:
    intra-op parallelism 1, inter-op = cores); the file has no mean latency.

    Raises
    ------
    ValidationError
        Missing or unknown columns, no row at ``sla_ms`` (the message lists the SLAs the file has), bad cells.
    """
    path = Path(path)
    header, rows, where = read_csv_cells(path)
    _require(header, ["CPU", "ARCH", "BATCH", "SLA", "p99_latency", "capacity", "saturation_tp"], path,
             "expected InfAdapter's capacity_result CSV")
    unknown = [h for h in header if h not in _INFADAPTER_COLUMNS]
    if unknown:
        raise ValidationError(f"{path}: column {unknown[0]!r} is not a column of InfAdapter's capacity profile "
                              f"(known: {', '.join(_INFADAPTER_COLUMNS)})")
    cells = {name: _column(rows, header, name) for name in header}
    sla = _required_numbers(cells["SLA"], "SLA", where, path, "an SLA in ms")
    try:
        wanted = float(sla_ms)
    except (TypeError, ValueError):
        raise ValidationError(f"{path}: sla_ms must be a number, got {sla_ms!r}") from None
    keep = np.flatnonzero(sla == wanted)
    if keep.size == 0:
        have = ", ".join(f"{v:g}" for v in sorted(set(sla.tolist()))) or "none"
        raise ValidationError(f"{path}: no rows with SLA={wanted:g} ms; the file has SLA {have}")
    sub_where = [where[i] for i in keep]
    pick = {name: series.iloc[keep].reset_index(drop=True) for name, series in cells.items()}
    arch = parse_texts(pick["ARCH"], "ARCH", sub_where, str(path))
    cores = _required_numbers(pick["CPU"], "CPU", sub_where, path, "a number of cores > 0")
    batch = _required_numbers(pick["BATCH"], "BATCH", sub_where, path, "a batch size (integer >= 1)")
    saturation = _required_numbers(pick["saturation_tp"], "saturation_tp", sub_where, path, "a number > 0")
    bad = np.flatnonzero(saturation <= 0)
    if bad.size:
        i = int(bad[0])
        raise ValidationError(f"{path}: {sub_where[i]}, column 'saturation_tp': expected a number > 0, got "
                              f"{pick['saturation_tp'].iloc[i]!r}")
    n = len(keep)
    frame = pd.DataFrame({
        "model": [model] * n,
        "variant": [None if a is None else f"{model}{a}" for a in arch],
        "hardware": pick["HARDWARE"] if "HARDWARE" in pick else ["cpu"] * n,
        "cores": pick["CPU"], "batch_size": pick["BATCH"],
        "latency_ms": cores * batch / saturation * 1000.0,
        "latency_p99_ms": pick["p99_latency"], "throughput_rps": pick["capacity"],
        "source": [source or f"{path} (InfAdapter capacity, SLA {wanted:g} ms)"] * n,
        "sla_ms": sla[keep], "saturation_rps": saturation,
    })
    if "MEM" in pick:
        frame["memory_limit"] = pick["MEM"]
    if "REPLICA" in pick:
        frame["replicas"] = pick["REPLICA"]
    origin = {"cores": "CPU", "batch_size": "BATCH", "latency_p99_ms": "p99_latency", "throughput_rps": "capacity",
              "hardware": "HARDWARE", "variant": "ARCH", "memory_limit": "MEM", "replicas": "REPLICA",
              "latency_ms": "derived: CPU * BATCH / saturation_tp"}
    return ProfileTable(validate_frame(frame, str(path), sub_where, origin), [path])


_IPA_SECONDS = {"model_latencies_avg": "latency_ms", "model_latencies_p99": "latency_p99_ms",
                "model_latencies_min": "latency_min_ms", "model_latencies_p95": "latency_p95_ms"}
_IPA_OTHER = {"throughput_max": "throughput_max_rps", "throughput_avg": "throughput_avg_rps",
              "expected_throughput": "expected_throughput_rps",
              "expected_max_throughput": "expected_max_throughput_rps", "cpu_usage_count_avg": "hw.cpu_usage_avg",
              "load_duration": "load_duration_s", "replicas": "replicas", "total_requests": "total_requests",
              "timeout_count": "timeout_count"}


def read_ipa_profile(path: str | Path, *, hardware: str = "cpu", model: str | None = None,
                     source: str | None = None) -> ProfileTable:
    """One of IPA's CPU profiling fragments (``ipa/profiles/*.csv``) as canonical rows.

    ``model_variant`` becomes ``variant`` (and ``model`` unless given), ``max_batch_size`` the batch size,
    ``cpu_request`` the cores, ``load`` the label ``offered_load_rps``; latencies are seconds and become ms.
    ``latency_ms`` is the mean (``model_latencies_avg``); files that only have the p99 use it and say so in the
    label ``latency_statistic = p99``. ``throughput_rps`` is left to its default, batch / latency: IPA's
    ``throughput_max`` saturates at the offered load and is kept as ``throughput_max_rps``.
    """
    path = Path(path)
    header, rows, where = read_csv_cells(path)
    _require(header, ["model_variant", "max_batch_size", "cpu_request", "load"], path,
             "expected one of IPA's profiling CSVs")
    if "model_latencies_avg" not in header and "model_latencies_p99" not in header:
        raise ValidationError(f"{path}: needs 'model_latencies_avg' or 'model_latencies_p99' (seconds)")
    known = {"model_variant", "max_batch_size", "cpu_request", "load", *_IPA_SECONDS, *_IPA_OTHER}
    unknown = [h for h in header if h not in known]
    if unknown:
        raise ValidationError(f"{path}: column {unknown[0]!r} is not a column of IPA's profiles servopt knows "
                              f"(known: {', '.join(sorted(known))})")
    if not rows:
        raise ValidationError(f"{path}: the file has a header but no rows")
    cells = {name: _column(rows, header, name) for name in header}
    n = len(rows)
    variants = parse_texts(cells["model_variant"], "model_variant", where, str(path))
    frame: dict[str, Any] = {
        "model": [model] * n if model is not None else variants, "variant": variants, "hardware": [hardware] * n,
        "cores": cells["cpu_request"], "batch_size": cells["max_batch_size"], "offered_load_rps": cells["load"],
        "source": [source or f"{path} (IPA profile)"] * n,
    }
    for name, column in _IPA_SECONDS.items():
        if name in cells:
            frame[column] = parse_numbers(cells[name], name, where, str(path), "a number of seconds") * 1000.0
    if "latency_ms" not in frame:
        frame["latency_ms"] = frame["latency_p99_ms"]
        frame["latency_statistic"] = ["p99"] * n
    for name, column in _IPA_OTHER.items():
        if name in cells:
            frame[column] = cells[name]
    origin = {"cores": "cpu_request", "batch_size": "max_batch_size", "offered_load_rps": "load",
              "variant": "model_variant", **{c: n for n, c in _IPA_SECONDS.items()},
              **{c: n for n, c in _IPA_OTHER.items()}}
    if "latency_statistic" in frame:
        origin["latency_ms"] = "model_latencies_p99"
    return ProfileTable(validate_frame(pd.DataFrame(frame), str(path), where, origin), [path])
