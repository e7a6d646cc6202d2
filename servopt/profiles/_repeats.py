"""Repeated runs of the same point: averaged into one row before fitting (``servopt fit --repeats mean``).

A profile that measures each point several times tells the runs apart with a ``run`` label (two rows of one point
with different numbers are refused otherwise, :func:`~servopt.profiles.check_duplicates`). A label is part of a
configuration's identity, so by default every run is a configuration of its own, fitted and cross-validated on
its own: with thousands of runs the per-configuration curve fits dominate (benchmarks/results/scale.csv).
:func:`average_runs` merges the runs of each point first: numeric measurements are averaged, the rest must agree.

>>> import pandas as pd
>>> from servopt.profiles import profile_from_frame
>>> raw = pd.DataFrame({"model": ["m"] * 4, "hardware": ["T4"] * 4, "batch_size": [1, 1, 8, 8],
...                     "latency_ms": [2.0, 4.0, 10.0, 12.0], "run": [1, 2, 1, 2]})
>>> merged = average_runs(profile_from_frame(raw).frame)
>>> merged["batch_size"].tolist(), merged["latency_ms"].tolist(), merged["throughput_rps"].round(1).tolist()
([1, 8], [3.0, 11.0], [333.3, 727.3])
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError
from servopt.profiles._schema import CANONICAL, point_columns

__all__ = ["REPEAT_MODES", "average_runs"]

#: ``servopt fit --repeats``: keep every run as its own configuration, or average them per point
REPEAT_MODES = ("run", "mean")


def average_runs(frame: pd.DataFrame, label: str = "run", source: str = "<profile>") -> pd.DataFrame:
    """One row per point of a validated profile: the rows that differ only in ``label`` averaged.

    Numeric measurement columns (``latency_ms``, ``warmup_ms``, ``hw.*``, ...) are averaged over the runs;
    ``throughput_rps`` is recomputed from the averaged latency where it was derived from it, else averaged;
    text columns that are not part of the point (``source``) keep their first value. The ``label`` column is
    dropped. A profile without the label is returned unchanged.

    Raises
    ------
    ValidationError
        ``label`` is a canonical column.
    """
    if label in CANONICAL:
        raise ValidationError(f"{source}: --repeats mean averages over a label column; {label!r} is a measurement")
    if label not in frame.columns:
        return frame
    keys = [c for c in point_columns(frame) if c != label]
    rest = [c for c in frame.columns if c not in keys and c != label]
    numeric = [c for c in rest if pd.api.types.is_numeric_dtype(frame[c])]
    text = [c for c in rest if c not in numeric]
    derived = None
    if "throughput_rps" in numeric and "latency_ms" in numeric:
        implied = frame["batch_size"] * 1000.0 / frame["latency_ms"]
        derived = bool(np.allclose(frame["throughput_rps"], implied, rtol=1e-12, equal_nan=True))
    grouped = frame.groupby(keys, dropna=False, sort=False)
    out = grouped[numeric].mean() if numeric else grouped.size().to_frame("_n").drop(columns="_n")
    if text:
        out = out.join(grouped[text].first())
    out = out.reset_index()
    if derived:
        out["throughput_rps"] = out["batch_size"] * 1000.0 / out["latency_ms"]
    for col in ("input_size", "batch_size"):
        if col in out and not out[col].isna().any():
            out[col] = out[col].astype(np.int64)
    order = [c for c in frame.columns if c in out.columns]
    return out[order]
