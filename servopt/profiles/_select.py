"""Selecting rows of a profile, with errors that list what is available."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError
from servopt.profiles._schema import IDENTITY_COLUMNS, label_columns

__all__ = ["select_rows", "require_single_group", "available", "read_where"]

#: label columns that record what a configuration measured rather than how it was set up: never the one to select
#: on first (two profiles of one model under two memory limits differ in ``oom_limit_mb``; their boundaries differ
#: per input size too)
_OUTCOMES = frozenset({"oom_batch_size"})


def available(frame: pd.DataFrame, column: str, limit: int = 20) -> str:
    """The distinct values of ``column`` as text, for messages."""
    values = frame[column].dropna().unique().tolist()
    try:
        values = sorted(values)
    except TypeError:
        values = sorted(values, key=str)
    shown = ", ".join(_fmt(v) for v in values[:limit])
    if len(values) > limit:
        shown += f", ... ({len(values)} in all)"
    return shown or "none"


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _is_plain(value: Any) -> bool:
    """Whether a value prints the same in YAML and Python (a number)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _matches(column: pd.Series, value: Any) -> pd.Series:
    if isinstance(value, (list, tuple, set, frozenset)):
        hit = pd.Series(False, index=column.index)
        for one in value:
            hit |= _matches(column, one)
        return hit
    if isinstance(value, str) and not value.strip():  # an empty label: the rows without one (the default setting)
        return column.astype(object).map(lambda v: v is None or pd.isna(v) or not str(v).strip())
    if isinstance(value, str) or pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column):
        return column.astype(object).map(lambda v: v is not None and not pd.isna(v) and _fmt(v) == _fmt(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return pd.Series(False, index=column.index)
    return pd.to_numeric(column, errors="coerce").eq(number)


def _show(value: Any) -> str:
    """``1``, ``'FP16'`` or ``one of [1, 2]`` for messages."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return "one of [" + ", ".join(_show(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else _fmt(value)


def select_rows(frame: pd.DataFrame, where: Mapping[str, Any], source: str) -> pd.DataFrame:
    """Rows of ``frame`` whose columns equal ``where`` (entries with value ``None`` are ignored).

    A value that is a list (or tuple, set) means "one of": ``{"concurrency": [1, 2]}`` keeps the rows at
    concurrency 1 or 2. Numbers compare as numbers (``1`` matches ``1.0``); text compares as text; the empty
    text keeps the rows without the label (``{"mem_pattern": ""}``: the rows measured with the default setting).

    Raises
    ------
    ValidationError
        A column that the profile lacks (the message lists the label columns it has), an empty list, or no row
        left; the message names ``source`` and lists the values available at the selector that left nothing.

    Examples
    --------
    >>> frame = pd.DataFrame({"batch_size": [1, 1, 8], "concurrency": [1, 2, 1]})
    >>> select_rows(frame, {"concurrency": 1}, "p.csv")["batch_size"].tolist()
    [1, 8]
    >>> len(select_rows(frame, {"concurrency": [1, 2]}, "p.csv"))
    3
    """
    rows = frame
    for column, value in where.items():
        if value is None:
            continue
        if column not in rows.columns:
            labels = [c for c in label_columns(frame) if c != "source"]
            have = (f"its label columns: {', '.join(map(repr, labels))}" if labels else "it has no label columns")
            raise ValidationError(f"{source}: cannot select {column}={_show(value)}: the profile has no column "
                                  f"{column!r} ({have}; all columns: {', '.join(map(str, frame.columns))})")
        if isinstance(value, (list, tuple, set, frozenset)) and not value:
            raise ValidationError(f"{source}: cannot select {column}=[]: give at least one value; available: "
                                  f"{available(rows, column)}")
        picked = rows[_matches(rows[column], value).to_numpy(dtype=bool)]
        if picked.empty:
            chosen = ", ".join(f"{k}={_show(v)}" for k, v in where.items() if v is not None and k != column)
            context = f" among rows with {chosen}" if chosen else ""
            raise ValidationError(f"{source}: no rows with {column}={_show(value)}{context}; available: "
                                  f"{available(rows, column)}")
        rows = picked
    return rows


def _hint(rows: pd.DataFrame, column: str, selectors: Sequence[str]) -> str:
    """How to pick one value of ``column``: the problem file's ``where:`` and Python's ``where=``."""
    values = rows[column].dropna().unique().tolist()
    try:
        values = sorted(values)
    except TypeError:
        values = sorted(values, key=str)
    if not values:
        return f"select on {column!r}"
    first = values[0]
    text = _fmt(first)
    python = text if _is_plain(first) else repr(str(first))
    if column in IDENTITY_COLUMNS or column == "hardware":
        return (f"pass it as a selector (e.g. {column}: {text} in the problem file, {column}={python} in Python)"
                if column not in selectors else "pass it as a selector")
    return f"add where: {{{column}: {text}}} to the problem file (where={{{column!r}: {python}}} in Python)"


def require_single_group(rows: pd.DataFrame, source: str, key: str, selectors: Sequence[str] = ()) -> None:
    """Raise unless ``rows`` hold at most one row per value of ``key`` among distinct configurations.

    When two configurations share a ``key`` value (e.g. two precisions at the same batch size), the message names
    the column to select on: a selector column first (``selectors``), otherwise the first label column that differs.
    """
    if not rows[key].duplicated().any():
        return
    candidates = [c for c in selectors if c in rows.columns]
    candidates += [c for c in IDENTITY_COLUMNS if c in rows.columns and c not in candidates]
    labels = [c for c in label_columns(rows) if c not in candidates and c != "source"]
    candidates += sorted(labels, key=lambda c: c in _OUTCOMES)  # a setting before what it measured
    if key != "batch_size" and "batch_size" in rows.columns:
        candidates.append("batch_size")
    for column in (c for c in candidates if c != key):
        if rows[column].astype(object).where(rows[column].notna(), "<missing>").nunique() > 1:
            hint = _hint(rows, column, selectors)
            unlabelled = f" and rows without it, which {{{column}: ''}} selects" if rows[column].isna().any() else ""
            raise ValidationError(
                f"{source}: several rows per {key} match; select on column {column!r} "
                f"(values: {available(rows, column)}{unlabelled}); {hint}")
    dup = rows[rows[key].duplicated(keep=False)]
    first = _fmt(dup[key].iloc[0])
    raise ValidationError(f"{source}: several rows with {key}={first} describe the same configuration; keep one "
                          "row per point")


def read_where(value: Any, source: str, key: str = "where") -> dict[str, Any]:
    """Check a problem file's ``where:`` mapping: label column -> value, or a list of values ("one of").

    Values are text, numbers or booleans (a list of them, non-empty). Whether the columns exist is decided when
    the rows are selected (:func:`select_rows`), where the message can list the profile's columns.

    Examples
    --------
    >>> read_where({"concurrency": [1, 2], "precision": "FP16"}, "p.yaml")
    {'concurrency': [1, 2], 'precision': 'FP16'}
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"{source}: key {key!r}: expected a mapping of label column -> value (or list of "
                              f"values), e.g. {{concurrency: 1}}; got {value!r}")
    out: dict[str, Any] = {}
    for column, wanted in value.items():
        if not isinstance(column, str) or not column:
            raise ValidationError(f"{source}: key {key!r}: column names are text, got {column!r}")
        items = wanted if isinstance(wanted, list) else [wanted]
        if not items:
            raise ValidationError(f"{source}: key '{key}.{column}': an empty list selects nothing; give a value or "
                                  "a list of values")
        for item in items:
            ok = isinstance(item, (str, bool)) or (_is_plain(item) and np.isfinite(float(item)))
            if not ok:
                raise ValidationError(f"{source}: key '{key}.{column}': expected text or a number (or a list of "
                                      f"them), got {item!r}")
        out[column] = list(wanted) if isinstance(wanted, list) else wanted
    return out
