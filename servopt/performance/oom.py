"""Out-of-memory boundaries in profiles, and how a plan describes the memory margin it held back.

``servopt profile --memory-limit-mb L --find-max-batch`` records, per configuration, the first batch that failed
(``oom_batch_size``) and the limit of the search (``oom_limit_mb``). :func:`boundaries_from_profile` turns them into
the rows :meth:`servopt.performance.MaxBatchModel.calibrate` learns from, :func:`profile_oom_limits` reads the
limits, :func:`pressure_rows_for` says whether the limit changed the memory measured near it, and
:func:`describe_margin` is the words a plan's ``note:`` uses for the margin
(:meth:`MaxBatchModel.largest_batch <servopt.performance.MaxBatchModel.largest_batch>`'s basis and share), and
:func:`another_limit` what a prediction or plan under a limit no boundary was measured under says, and
:func:`ceiling_notes` what a largest batch at the memory model's cap (``max_batch_size``) says.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from servopt.exceptions import ValidationError

__all__ = ["PRESSURE_ROWS", "RESERVED_PEAK_COLUMN", "another_limit", "boundaries_from_profile", "boundary_limits",
           "ceiling_notes", "check_limit", "describe_ceiling", "describe_margin", "pressure_rows_for",
           "profile_oom_limits"]

#: what ``MaxBatchModel(pressure_rows=...)`` does with the rows measured above half the search's limit
PRESSURE_ROWS = ("drop", "keep")
#: the column of PyTorch's caching allocator's reserved peak (the torch profiler's ``memory_mb`` on GPU)
RESERVED_PEAK_COLUMN = "hw.torch/reserved_peak_mb"


def pressure_rows_for(frame: Any) -> str:
    """``MaxBatchModel(pressure_rows=...)`` for a profile's memory rows: ``"drop"`` where ``memory_mb`` is what a
    caching allocator reserves under a limit it enforces, else ``"keep"``.

    The torch profiler on GPU caps PyTorch's allocator at the limit (``set_per_process_memory_fraction``); near the
    cap the allocator frees its cached blocks and retries, so a batch reserves less there than unconstrained, and
    the rows above half the limit would bend a line in batch down. Its rows carry ``hw.torch/reserved_peak_mb``.
    The ONNX Runtime profilers (CPU RSS, GPU NVML) only *observe* the limit (the run is stopped when its peak
    passes it): memory near the limit is what it is without one, and those rows are the closest to the boundary
    a line extrapolates to. Keeping them, the held-out sizes of the CPU sets seen while choosing (19-22, 136 cases
    with ONNX Runtime's memory pattern) had 0 largest batches above the scanned boundary and 67 within 10 %,
    against 1 and 64; fresh set 24, held out, 0 above and 38 of 65 within either way (docs/profiler.md, *Max
    batch*).
    """
    if RESERVED_PEAK_COLUMN not in getattr(frame, "columns", ()):
        return "keep"
    import pandas as pd

    return "drop" if pd.to_numeric(frame[RESERVED_PEAK_COLUMN], errors="coerce").notna().any() else "keep"


def boundaries_from_profile(frame: Any, features: list[str], with_limits: bool = False) -> tuple[Any, ...]:
    """The out-of-memory boundaries a profile records: one row per configuration with ``oom_batch_size``.

    Returns the feature rows (``features``, the batch size set to the boundary) and the largest batch that ran,
    ``oom_batch_size - 1``: exact after a bisection (``servopt profile --find-max-batch``); after a plain grid
    sweep it is the most that may have fitted, so the calibration is only as safe as that sweep is fine. With
    ``with_limits`` also the limit each search ran under (the ``oom_limit_mb`` column, NaN where the profile
    does not say); a configuration searched under two limits gives one boundary per limit, and one searched twice
    under the same limit its smaller boundary.
    """
    import pandas as pd

    if "oom_batch_size" not in frame.columns:
        empty = (frame.iloc[0:0][features], np.empty(0))
        return (*empty, np.empty(0)) if with_limits else empty
    rows = frame[pd.to_numeric(frame["oom_batch_size"], errors="coerce") > 1]
    keys = [c for c in features if c != "batch_size" and not c.startswith("hw.")]
    if "oom_limit_mb" in rows.columns:
        keys.append("oom_limit_mb")
    # the smallest where a configuration was searched more than once under one limit (as calibrate keeps it)
    rows = rows.assign(_oom=pd.to_numeric(rows["oom_batch_size"])).sort_values("_oom", kind="stable")
    first = (rows.drop_duplicates(keys) if keys else rows.iloc[:1]).sort_index()
    oom = first["_oom"].to_numpy(dtype=float)
    if not with_limits:
        return first[features].reset_index(drop=True), oom - 1
    limits = pd.to_numeric(first["oom_limit_mb"], errors="coerce").to_numpy(dtype=float) \
        if "oom_limit_mb" in first.columns else np.full(len(first), np.nan)
    return first[features].reset_index(drop=True), oom - 1, limits


def profile_oom_limits(frame: Any, source: str = "<profile>") -> np.ndarray:
    """The distinct memory limits a profile's out-of-memory searches ran under (its ``oom_limit_mb`` column,
    written by ``servopt profile --memory-limit-mb``), sorted; empty when the profile does not record one.

    Raises
    ------
    ValidationError
        A value that is not a number > 0 (names the file, column and value).
    """
    import pandas as pd

    if "oom_limit_mb" not in frame.columns:
        return np.empty(0)
    cells = frame["oom_limit_mb"]
    values = pd.to_numeric(cells, errors="coerce")
    bad = cells.notna() & ~(values > 0)
    if bad.any():
        value = cells[bad].iloc[0]
        value = value.item() if hasattr(value, "item") else value
        raise ValidationError(f"{source}: column 'oom_limit_mb': {value!r} is not a memory limit in MiB > 0")
    return np.unique(values.dropna().to_numpy(dtype=float))


def describe_margin(basis: str, oom_margin: float, limit_mb: float | None = None) -> str:
    """What a plan's note says of a memory margin: its basis (:data:`~servopt.performance.memory.FRACTION_BASES`)
    and the share of the limit held back, or, uncalibrated, that nothing was held back. With ``limit_mb``, where
    the batch is not the configuration's own measured boundary, how to measure it (the held-out CPU sizes had 1
    case in 35 above the batch that fits: docs/profiler.md, *Max batch*).

    >>> describe_margin("unprofiled size", 0.2, 400).split("; ")
    ['unprofiled size', '+20.0 % of the limit held back', 'servopt profile --memory-limit-mb 400 --find-max-batch at \
this configuration measures its own boundary']
    """
    if basis == "uncalibrated":
        text = (f"{basis}; the profiles record no out-of-memory boundary, so nothing is held back and the batch "
                "may not fit")
    else:
        text = f"{basis}; {100 * oom_margin:+.1f} % of the limit held back"
        text += ": the model over-predicts memory near the limit" if oom_margin < 0 else ""
    if limit_mb is not None and basis != "own boundary":
        text += (f"; servopt profile --memory-limit-mb {limit_mb:g} --find-max-batch at this configuration measures "
                 "its own boundary")
    return text


def boundary_limits(model: Any) -> list[float]:
    """The limits the out-of-memory boundaries a fitted :class:`~servopt.performance.MaxBatchModel` was calibrated
    on were measured under, sorted (empty: not calibrated)."""
    return sorted({float(c["memory_limit_mb"]) for c in getattr(model, "calibration_", [])})


def another_limit(limits: list[float], limit_mb: float, command: bool = True) -> str | None:
    """What a largest batch under ``limit_mb`` must say when the memory model's boundaries were measured under
    ``limits`` (:func:`boundary_limits`), none of them ``limit_mb``: it carries their ratios less their spread to a
    limit where none was measured. On the fresh CPU graphs that put 94 of 972 such cases above the batch that fits
    (67 of them under a limit below the calibrated one; docs/profiler.md, *Max batch*, "Another limit"). None where
    a boundary was measured under ``limit_mb``, or none at all (the basis ``uncalibrated`` says so itself).
    ``command``: end with the command that measures the boundary (a plan's note has it already,
    :func:`describe_margin`).

    >>> another_limit([8192.0], 8192) is None, another_limit([], 1024) is None
    (True, True)
    >>> another_limit([100.0, 400.0], 200).split(";")[0]
    'no out-of-memory boundary was measured under 200 MiB (only under 100, 400 MiB)'
    """
    if not limits or float(limit_mb) in limits:
        return None
    text = (f"no out-of-memory boundary was measured under {limit_mb:g} MiB (only under "
            f"{', '.join(f'{x:g}' for x in limits)} MiB); the batch there carries their ratios less their spread, "
            f"which can be far below or above the batch that fits (on the fresh CPU graphs 94 of 972 such cases "
            f"were above it: docs/profiler.md, Max batch, another limit)")
    if command:
        text += (f"; to plan under {limit_mb:g} MiB, measure its boundary (servopt profile MODEL --memory-limit-mb "
                 f"{limit_mb:g} --find-max-batch) and fit on both profiles")
    return text


def check_limit(memory_limit_mb: Any, where: str) -> float:
    """``memory_limit_mb`` as a float > 0, or a ValidationError naming ``where``."""
    try:
        limit = float(memory_limit_mb)
    except (TypeError, ValueError):
        limit = float("nan")
    if not limit > 0 or not np.isfinite(limit):
        raise ValidationError(f"{where}: memory_limit_mb={memory_limit_mb!r}: expected a number > 0")
    return limit


def describe_ceiling(cap: int, need_one: float, need_cap: float, limit_mb: float) -> str:
    """What a largest batch equal to the memory model's cap ``cap`` (``MaxBatchModel.max_batch_size``, the
    largest batch it considers) says under ``limit_mb``: where the predicted memory grows with the batch
    (``need_cap`` above ``need_one``, MiB at batch ``cap`` and 1), the cap is reached below the limit; only where
    it does not grow is no limit binding at all.

    >>> describe_ceiling(4096, 108.0, 52000.0, 1e12).split(":")[0]
    'batch 4096 is the largest batch the memory model considers (its cap, MaxBatchModel.max_batch_size), and it is \
predicted to need 52,000 MiB, below the limit of 1e+12 MiB'
    >>> describe_ceiling(4096, 100.0, 100.0, 1000).split(":")[0]
    "that is the memory model's ceiling (batch 4096), not a boundary"
    """
    if need_cap > need_one * (1 + 1e-6):
        return (f"batch {cap} is the largest batch the memory model considers (its cap, "
                f"MaxBatchModel.max_batch_size), and it is predicted to need {need_cap:,.0f} MiB, below the limit of "
                f"{limit_mb:g} MiB: the cap binds, not the limit (the memory does grow with the batch: "
                f"{need_one:,.0f} MiB at batch 1)")
    return (f"that is the memory model's ceiling (batch {cap}), not a boundary: the predicted memory does not grow "
            f"with the batch ({need_one:,.0f} MiB at batch 1, {need_cap:,.0f} at {cap}), so no limit binds (profile "
            "larger batches)")


def ceiling_notes(model: Any, X: Any, max_batch: Any, limit_mb: float) -> list[str | None]:
    """Per row of ``X`` (the features of the fitted :class:`~servopt.performance.MaxBatchModel` ``model``), the
    words of :func:`describe_ceiling` where its largest batch ``max_batch`` reached the model's cap, else None."""
    cap = int(model.max_batch_size)
    out: list[str | None] = []
    for i, largest in enumerate(np.asarray(max_batch)):
        if int(largest) < cap:
            out.append(None)
            continue
        grid = X.iloc[[i, i]].reset_index(drop=True).copy()
        grid["batch_size"] = [1, cap]
        one, top = (float(v) for v in model.predict(grid))
        out.append(describe_ceiling(cap, one, top, limit_mb))
    return out
