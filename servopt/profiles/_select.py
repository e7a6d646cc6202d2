"""Selecting rows of a profile, with errors that list what is available."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError
from servopt.profiles._schema import IDENTITY_COLUMNS, label_columns

__all__ = ["select_rows", "require_single_group", "available"]


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


def _matches(column: pd.Series, value: Any) -> pd.Series:
    if isinstance(value, str) or pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column):
        return column.astype(object).map(lambda v: v is not None and not pd.isna(v) and str(v) == str(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return pd.Series(False, index=column.index)
    return pd.to_numeric(column, errors="coerce").eq(number)


def select_rows(frame: pd.DataFrame, where: Mapping[str, Any], source: str) -> pd.DataFrame:
    """Rows of ``frame`` whose columns equal ``where`` (entries with value ``None`` are ignored).

    Raises
    ------
    ValidationError
        A column that the profile lacks, or no row left; the message names ``source`` and lists the values
        available at the selector that left nothing.
    """
    rows = frame
    for column, value in where.items():
        if value is None:
            continue
        if column not in rows.columns:
            raise ValidationError(f"{source}: cannot select {column}={value!r}: the profile has no column "
                                  f"{column!r} (columns: {', '.join(map(str, frame.columns))})")
        picked = rows[_matches(rows[column], value).to_numpy(dtype=bool)]
        if picked.empty:
            chosen = ", ".join(f"{k}={v!r}" for k, v in where.items() if v is not None and k != column)
            context = f" among rows with {chosen}" if chosen else ""
            raise ValidationError(f"{source}: no rows with {column}={value!r}{context}; available: "
                                  f"{available(rows, column)}")
        rows = picked
    return rows


def require_single_group(rows: pd.DataFrame, source: str, key: str, selectors: Sequence[str] = ()) -> None:
    """Raise unless ``rows`` hold at most one row per value of ``key`` among distinct configurations.

    When two configurations share a ``key`` value (e.g. two precisions at the same batch size), the message names
    the column to select on: a selector column first (``selectors``), otherwise the first label column that differs.
    """
    if not rows[key].duplicated().any():
        return
    candidates = [c for c in selectors if c in rows.columns]
    candidates += [c for c in IDENTITY_COLUMNS if c in rows.columns and c not in candidates]
    candidates += [c for c in label_columns(rows) if c not in candidates and c != "source"]
    if key != "batch_size" and "batch_size" in rows.columns:
        candidates.append("batch_size")
    for column in (c for c in candidates if c != key):
        if rows[column].astype(object).where(rows[column].notna(), "<missing>").nunique() > 1:
            hint = ("pass it as a selector" if column in selectors else
                    f"filter the profile on it (e.g. where={{{column!r}: ...}})")
            raise ValidationError(
                f"{source}: several rows per {key} match; select on column {column!r} "
                f"(values: {available(rows, column)}); {hint}")
    dup = rows[rows[key].duplicated(keep=False)]
    first = _fmt(dup[key].iloc[0])
    raise ValidationError(f"{source}: several rows with {key}={first} describe the same configuration; keep one "
                          "row per point")
