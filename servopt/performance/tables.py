"""Per-batch and per-core tables for problems: exact profiled points or fitted models, one interface.

:func:`batch_table` gives ``batch size -> {"latency_ms", "warmup_ms", "memory_mb", "throughput_rps"}`` and
:func:`capacity_table` gives ``cores -> RPS``, either as profiled (``mode="table"``) or from the fitted curves
(``mode="fit"``), so a problem can take either without knowing which.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError
from servopt.performance._curves import CAPACITY_CURVES, fit_capacity_curve, fit_curve, fit_line

__all__ = ["batch_table", "capacity_table"]

_MODES = ("table", "fit")
_OPTIONAL_TARGETS = ("warmup_ms", "memory_mb", "throughput_rps")


def _frame(frame: Any) -> pd.DataFrame:
    inner = getattr(frame, "frame", frame)
    if not isinstance(inner, pd.DataFrame):
        raise ValidationError(f"expected a profile (ProfileTable or pandas DataFrame), got {type(frame).__name__}")
    return inner


def _check_mode(mode: str, source: str) -> None:
    if mode not in _MODES:
        raise ValidationError(f"{source}: mode={mode!r}: expected one of {', '.join(_MODES)}")


def _ints(values: Iterable[Any] | None, name: str, source: str, minimum: int) -> list[int] | None:
    if values is None:
        return None
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(
                float(v)) or float(v) != int(v) or int(v) < minimum:
            raise ValidationError(f"{source}: {name}: expected integers >= {minimum}, got {v!r}")
        out.append(int(v))
    if not out:
        raise ValidationError(f"{source}: {name}: expected at least one value")
    return sorted(set(out))


def _select(frame: pd.DataFrame, where: Mapping[str, Any], source: str, key: str) -> pd.DataFrame:
    from servopt.profiles import require_single_group, select_rows

    rows = select_rows(frame, where, source)
    require_single_group(rows, source, key, selectors=[k for k in where if k != key])
    return rows


def batch_table(frame: Any, *, hardware: str, model: str | None = None, variant: str | None = None,
                input_size: int | None = None, cores: float | None = None, mode: str = "table",
                batch_sizes: Iterable[int] | None = None, source: str = "<profile>",
                where: Mapping[str, Any] | None = None) -> dict[int, dict[str, float]]:
    """Latency (and warm-up, memory, throughput where known) per batch size for one configuration.

    Parameters
    ----------
    frame : ProfileTable or pandas.DataFrame
        A profile in the canonical schema.
    hardware, model, variant, input_size, cores
        Selectors (``None``: any). They must leave one configuration: one row per batch size.
    mode : {"table", "fit"}
        ``"table"``: the exact profiled points (``batch_sizes`` picks some; each must be profiled). ``"fit"``: the
        latency curve of :class:`~servopt.performance.LatencyModel` (and the same curve for warm-up, a line for
        memory) fitted on the selected rows, predicted at ``batch_sizes`` (default: the profiled batch sizes plus
        the powers of two up to the largest profiled one); ``throughput_rps`` is then batch / latency.
    source : str
        Name of the profile in error messages.
    where : mapping, optional
        Selectors on other columns, e.g. ``{"precision": "TF32"}``.

    Returns
    -------
    dict
        ``{batch_size: {"latency_ms": ..., "warmup_ms": ..., "memory_mb": ..., "throughput_rps": ...}}`` in
        increasing batch order; keys other than ``latency_ms`` only where the profile has them.

    Raises
    ------
    ValidationError
        Nothing matches (the message names ``source`` and lists the values available), several configurations
        match (the message names the column to select on), or a requested batch size was not profiled in
        ``mode="table"``.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"model": "m", "hardware": "T4", "batch_size": [1, 8],
    ...                       "latency_ms": [2.0, 9.0]})
    >>> batch_table(frame, hardware="T4")[8]["latency_ms"]
    9.0
    """
    data = _frame(frame)
    _check_mode(mode, source)
    selectors = {"hardware": hardware, "model": model, "variant": variant, "input_size": input_size,
                 "cores": cores, **dict(where or {})}
    rows = _select(data, selectors, source, "batch_size").sort_values("batch_size", kind="stable")
    wanted = _ints(batch_sizes, "batch_sizes", source, 1)
    profiled = rows["batch_size"].astype(int).tolist()
    targets = [c for c in _OPTIONAL_TARGETS if c in rows.columns and rows[c].notna().any()]
    if mode == "table":
        if wanted is not None:
            missing = [b for b in wanted if b not in profiled]
            if missing:
                raise ValidationError(f"{source}: batch size(s) {', '.join(map(str, missing))} not profiled for "
                                      f"this selection; profiled: {', '.join(map(str, profiled))} (use mode='fit' "
                                      "to predict other batch sizes)")
            rows = rows[rows["batch_size"].isin(wanted)]
        out: dict[int, dict[str, float]] = {}
        for _, row in rows.iterrows():
            entry = {"latency_ms": float(row["latency_ms"])}
            entry.update({c: float(row[c]) for c in targets if pd.notna(row[c])})
            out[int(row["batch_size"])] = entry
        return out
    if wanted is None:
        top = max(profiled)
        wanted = sorted(set(profiled) | {2 ** i for i in range(int(math.log2(top)) + 1)})
    b = rows["batch_size"].to_numpy(dtype=float)
    at = np.asarray(wanted, dtype=float)
    latency = fit_curve(b, rows["latency_ms"].to_numpy(dtype=float))(at)
    columns: dict[str, np.ndarray] = {"latency_ms": latency}
    if "warmup_ms" in targets:
        known = rows["warmup_ms"].notna().to_numpy()
        columns["warmup_ms"] = fit_curve(b[known], rows["warmup_ms"].to_numpy(dtype=float)[known])(at)
    if "memory_mb" in targets:
        known = rows["memory_mb"].notna().to_numpy()
        line = fit_line(b[known], rows["memory_mb"].to_numpy(dtype=float)[known])
        columns["memory_mb"] = np.maximum(line(at), 0.0)
    if "throughput_rps" in targets:
        columns["throughput_rps"] = at * 1000.0 / latency
    return {int(bs): {k: float(v[i]) for k, v in columns.items()} for i, bs in enumerate(wanted)}


def capacity_table(frame: Any, *, variant: str, hardware: str | None = None, mode: str = "table",
                   headroom: float = 1.0, cores: Iterable[int] | None = None, source: str = "<profile>",
                   where: Mapping[str, Any] | None = None, curve: str = "line") -> dict[int, float]:
    """RPS a variant serves within its latency SLO, per number of cores.

    Parameters
    ----------
    frame : ProfileTable or pandas.DataFrame
        A capacity profile: ``cores`` and ``throughput_rps`` (e.g. from
        :func:`servopt.profiles.read_infadapter_capacity`).
    variant, hardware
        Selectors; they must leave one row per core count.
    mode : {"table", "fit"}
        ``"table"``: ``headroom`` x the profiled capacities (``cores`` picks some; each must be profiled).
        ``"fit"``: a curve ``capacity ~ cores`` fitted on the selected rows, returned as
        ``floor(headroom * curve(n))`` (at least 0) for ``n`` in ``cores`` (default: the profiled core counts).
    headroom : float
        InfAdapter serves 0.8 of the capacity.
    curve : {"line", "average"}
        The fitted curve of ``mode="fit"``: InfAdapter's least-squares line (default), or the average of the
        line, the line through the origin and the quadratic, which predicts unprofiled core counts better
        (:class:`~servopt.performance.CapacityModel`).

    Raises
    ------
    ValidationError
        Nothing matches, several rows per core count, non-integer core counts, unprofiled ``cores`` in table mode.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"model": "resnet", "variant": "resnet18", "hardware": "cpu", "batch_size": 1,
    ...                       "cores": [1, 2, 4], "latency_ms": 50.0, "throughput_rps": [19.0, 43.0, 90.0]})
    >>> capacity_table(frame, variant="resnet18", mode="fit", headroom=0.8, cores=[3])
    {3: 53.0}
    """
    data = _frame(frame)
    _check_mode(mode, source)
    if not isinstance(headroom, (int, float)) or isinstance(headroom, bool) or not 0 < headroom <= 10:
        raise ValidationError(f"{source}: headroom={headroom!r}: expected a number in (0, 10]")
    if "cores" not in data.columns:
        raise ValidationError(f"{source}: the profile has no 'cores' column; a capacity table needs capacity "
                              "(throughput_rps) per number of cores")
    rows = _select(data, {"variant": variant, "hardware": hardware, **dict(where or {})}, source, "cores")
    rows = rows[rows["cores"].notna()].sort_values("cores", kind="stable")
    if rows.empty:
        raise ValidationError(f"{source}: variant {variant!r} has no rows with a core count")
    profiled_raw = rows["cores"].to_numpy(dtype=float)
    if np.any(profiled_raw != np.round(profiled_raw)):
        raise ValidationError(f"{source}: core counts must be whole numbers for a capacity table, got "
                              f"{', '.join(f'{c:g}' for c in profiled_raw)}")
    profiled = profiled_raw.astype(int).tolist()
    capacity = rows["throughput_rps"].to_numpy(dtype=float)
    wanted = _ints(cores, "cores", source, 1)
    if mode == "table":
        lookup = dict(zip(profiled, capacity))
        if wanted is not None:
            missing = [n for n in wanted if n not in lookup]
            if missing:
                raise ValidationError(f"{source}: core count(s) {', '.join(map(str, missing))} not profiled for "
                                      f"variant {variant!r}; profiled: {', '.join(map(str, profiled))} (use "
                                      "mode='fit' to predict others)")
        return {n: float(headroom * lookup[n]) for n in (wanted or profiled)}
    if curve not in CAPACITY_CURVES:
        raise ValidationError(f"{source}: curve={curve!r}: expected one of {', '.join(CAPACITY_CURVES)}")
    fitted = fit_capacity_curve(profiled_raw, capacity, curve)
    return {n: float(max(0, math.floor(headroom * float(fitted(n))))) for n in (wanted or profiled)}
