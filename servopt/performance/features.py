"""Which profile columns each performance model sees, and how a profile or query becomes a feature frame.

Targets and their models:

=========  ================  ============  ==========================================================
target     column            x feature     model
=========  ================  ============  ==========================================================
latency    ``latency_ms``    batch_size    :class:`~servopt.performance.LatencyModel`
warmup     ``warmup_ms``     batch_size    :class:`~servopt.performance.WarmupModel`
memory     ``memory_mb``     batch_size    :class:`~servopt.performance.MaxBatchModel`
capacity   ``throughput_rps`` cores        :class:`~servopt.performance.CapacityModel`
=========  ================  ============  ==========================================================

Features: the x feature; ``model``, ``variant``, ``hardware`` (text); ``input_size`` and ``cores`` where the
profile has them (empty cells become 0); label columns that tell configurations apart beyond those
(``concurrency`` does; ``precision`` does not when each variant has one precision); and ``hw.*`` features: for
warm-up every ``hw.*`` column without gaps, for the other targets only those that are constant within each
configuration (static descriptions of the machine), since a query cannot know the utilisation a measurement
would have seen. For latency also ``gflops`` (FLOPs of one sample at the row's input size, recorded by the
profilers or added by ``servopt fit --graph``) where some row has it and it takes at most one value per
configuration: :class:`~servopt.performance.WorkLatencyModel` takes it as the work of a batch; it never tells
configurations apart, and a query may leave it empty or out (:data:`OPTIONAL_FEATURES`); for warm-up and
memory also. ``act_peak_mb`` (the peak of live activations of one sample, recorded by the ONNX profilers) is not a
feature: the memory model takes it only when asked (``MaxBatchModel(work_axis="act_peak")``). A label that takes
one value per x value inside a configuration (a memory limit scaled with the cores) follows x and is neither a
feature nor a configuration key. ``capacity`` is a target only for configurations profiled at three or more core
counts (a line needs two points after one is held out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError

__all__ = ["MEMORY_WORK_FEATURE", "OPTIONAL_FEATURES", "TARGETS", "Target", "WORK_FEATURE", "feature_columns",
           "feature_frame", "group_columns", "target_rows"]

#: per-sample FLOPs (GFLOP), the latency target's work feature where a profile records it
WORK_FEATURE = "gflops"
#: per-sample peak of live activations (MiB), the work of ``MaxBatchModel(work_axis="act_peak")`` (the ONNX
#: profilers record it, except for graphs with attention: :func:`servopt.performance.work.act_peak_mb`)
MEMORY_WORK_FEATURE = "act_peak_mb"
#: features a query may lack (absent or empty cells become 0: unknown, the model fills them in)
OPTIONAL_FEATURES = frozenset({WORK_FEATURE})


@dataclass(frozen=True)
class Target:
    """One predicted quantity: its profile column, the feature it is a curve in, and what it is called."""

    name: str
    column: str
    x: str
    hw: str  # "all" or "static"


TARGETS: dict[str, Target] = {
    "latency": Target("latency", "latency_ms", "batch_size", "static"),
    "warmup": Target("warmup", "warmup_ms", "batch_size", "all"),
    "memory": Target("memory", "memory_mb", "batch_size", "static"),
    "capacity": Target("capacity", "throughput_rps", "cores", "static"),
}
_TEXT_IDENTITY = ("model", "variant", "hardware")
_NUMERIC_IDENTITY = ("input_size", "cores", "batch_size")
#: ``satisfies_constraints``: Model Analyzer's Yes/No outcome, which profiles imported before 931351c carry; as a
#: label it split each configuration's batch sweep
_NOT_FEATURES = frozenset({"source", "oom_batch_size", "oom_limit_mb", "satisfies_constraints"})


def _labels(frame: pd.DataFrame) -> list[str]:
    from servopt.profiles import label_columns

    return [c for c in label_columns(frame) if c not in _NOT_FEATURES and c not in _TEXT_IDENTITY]


def target_rows(frame: pd.DataFrame, target: Target) -> pd.DataFrame:
    """The rows a target is fitted on: those with a value (and for capacity, with a core count)."""
    if target.column not in frame.columns:
        return frame.iloc[0:0]
    rows = frame[frame[target.column].notna()]
    if target.x not in rows.columns:
        return rows.iloc[0:0]
    rows = rows[rows[target.x].notna()]
    if target.name == "capacity":
        keys = group_columns(rows, target)
        distinct = rows.groupby(keys, dropna=False)[target.x].transform("nunique") if keys else \
            pd.Series(rows[target.x].nunique(), index=rows.index)
        rows = rows[distinct >= 3]
    return rows


def group_columns(rows: pd.DataFrame, target: Target) -> list[str]:
    """Columns that tell the configurations (curves) of a target apart."""
    out = [c for c in (*_TEXT_IDENTITY, *_NUMERIC_IDENTITY) if c in rows.columns and c != target.x]
    return out + [c for c in _labels(rows) if c not in out and not _follows_x(rows, c, out, target.x)]


def _follows_x(rows: pd.DataFrame, label: str, keys: list[str], x: str) -> bool:
    """Whether ``label`` is a setting that changes with the x feature inside each configuration.

    InfAdapter's January profile gives each pod 2 GB per core: its ``memory_limit`` is one value per core count,
    so it describes the core count, not a separate configuration, and must not split the capacity curve.
    """
    if x not in rows.columns or rows.empty:
        return False
    values = rows[label].astype(object).where(rows[label].notna(), "<missing>")
    by = [rows[k].astype(object) for k in keys]
    per_x = values.groupby([*by, rows[x]], dropna=False).nunique()
    per_config = values.groupby(by, dropna=False).nunique() if by else pd.Series([values.nunique()])
    return int(per_x.max()) <= 1 and int(per_config.max()) > 1


def feature_columns(rows: pd.DataFrame, target: Target) -> list[str]:
    """The feature columns for ``target`` given the rows it is fitted on (see the module docstring)."""
    columns = [target.x]
    columns += [c for c in _TEXT_IDENTITY if c in rows.columns]
    columns += [c for c in _NUMERIC_IDENTITY if c in rows.columns and c != target.x
                and (c != "batch_size" or rows[c].nunique() > 1)]
    for label in _labels(rows):  # only labels that split configurations the columns so far do not
        keys = [c for c in columns[1:] if not c.startswith("hw.")]
        if _follows_x(rows, label, keys, target.x):
            continue
        values = rows[label].astype(object).where(rows[label].notna(), "<missing>")
        spread = values.groupby([rows[k].astype(object) for k in keys] if keys else np.zeros(len(rows)),
                                dropna=False).nunique()
        if int(spread.max()) > 1:
            columns.append(label)
    if target.name in ("latency", "warmup", "memory") and _has_work(rows, group_columns(rows, target)):
        columns.append(WORK_FEATURE)
    hw = [c for c in rows.columns if c.startswith("hw.") and rows[c].notna().all()]
    if target.hw == "static" and hw:
        keys = group_columns(rows, target)
        per_group = rows.groupby(keys, dropna=False)[hw].nunique() if keys else rows[hw].nunique().to_frame().T
        hw = [c for c in hw if int(per_group[c].max()) <= 1]
    return columns + hw


def _has_work(rows: pd.DataFrame, keys: list[str]) -> bool:
    """Whether ``rows`` record a positive per-sample work that takes at most one value per configuration."""
    if WORK_FEATURE not in rows.columns:
        return False
    work = pd.to_numeric(rows[WORK_FEATURE], errors="coerce")
    known = work.notna() & (work > 0)
    if not known.any():
        return False
    values = work[known]
    if not keys:
        return bool(values.max() - values.min() <= 1e-6 * values.max())
    by = values.groupby([rows.loc[known, k].astype(object) for k in keys], dropna=False)
    return bool(((by.max() - by.min()) <= 1e-6 * by.max()).all())  # rounding apart, one value per configuration


def feature_frame(data: pd.DataFrame, columns: list[str], text: list[str], source: str,
                  where: list[str] | None = None) -> pd.DataFrame:
    """The model input for ``columns`` from a profile or query table (text cells or typed values).

    Text features stay text (empty: ""); numeric features become float. Empty cells are 0 for ``input_size``,
    ``cores`` and labels (not applicable), and an error for the x feature and ``hw.*`` features.

    Raises
    ------
    ValidationError
        A missing column, or a cell that is not a number; naming ``source``, the row and the column.
    """
    from servopt.profiles import missing_mask, parse_numbers

    absent = [c for c in columns if c in OPTIONAL_FEATURES and c not in data.columns]
    if absent:
        data = data.assign(**{c: np.nan for c in absent})
    missing = [c for c in columns if c not in data.columns]
    if missing:
        # a query may leave out hw.* columns (they take the profile's medians): not listed, unless one is missing
        needed = [c for c in columns if not c.startswith("hw.") or c in missing]
        hw = " (hw.* columns may be left out)" if len(needed) < len(columns) else ""
        raise ValidationError(f"{source}: missing column(s) {', '.join(map(repr, missing))}; the fitted models need "
                              f"{', '.join(needed)}{hw}")
    where = where or [f"row {i + 1}" for i in range(len(data))]
    out: dict[str, Any] = {}
    for col in columns:
        cells = data[col].reset_index(drop=True)
        if col in text:
            blank = missing_mask(cells)
            out[col] = ["" if blank[i] else str(v).strip() for i, v in enumerate(cells)]
            continue
        values = parse_numbers(cells, col, where, source, "a number")
        if col == columns[0] or col.startswith("hw."):
            gaps = np.isnan(values)
            if gaps.any():
                i = int(np.argmax(gaps))
                raise ValidationError(f"{source}: {where[i]}, column {col!r}: expected a number, got an empty cell")
        if col == columns[0]:
            if np.any(values <= 0):
                i = int(np.argmax(values <= 0))
                raise ValidationError(f"{source}: {where[i]}, column {col!r}: expected a number > 0, got "
                                      f"{cells.iloc[i]!r}")
        out[col] = np.nan_to_num(values, nan=0.0)
    frame = pd.DataFrame(out)
    for col in text:
        frame[col] = frame[col].astype(object)
    return frame
