"""``servopt predict``'s checks of a query: no rows, defaults, values that cannot be sizes, unseen configurations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError

__all__ = ["check_query", "extrapolated_rows", "served_by"]

#: numeric features that must be > 0 where given (an empty input_size / cores cell means "not applicable")
_POSITIVE = ("batch_size", "cores", "input_size")


def check_query(models: Any, raw: pd.DataFrame, source: str, where: list[str]) -> pd.DataFrame:
    """The query with ``variant`` defaulted to ``model``; refuses an empty query and sizes <= 0.

    Raises
    ------
    ValidationError
        No rows, or a batch size, core count or input size that is not > 0 (naming the row and the value).
    """
    if len(raw) == 0:
        raise ValidationError(f"{source}: query file has no rows; give one row per prediction")
    features = {f for t in models.targets.values() for f in t.features}
    if "variant" in features and "model" in raw.columns:
        raw = raw.copy()
        if "variant" not in raw.columns:
            raw["variant"] = raw["model"]
        else:
            blank = raw["variant"].isna() | (raw["variant"].astype(str).str.strip() == "")
            raw.loc[blank, "variant"] = raw.loc[blank, "model"]
    for col in _POSITIVE:
        if col not in features or col not in raw.columns:
            continue
        values = pd.to_numeric(raw[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isnan(values) & (values <= 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValidationError(f"{source}: {where[i]}, column {col!r}: expected a number > 0, got "
                                  f"{float(values[i]):g}")
    return raw


def extrapolated_rows(models: Any, raw: pd.DataFrame, source: str, where: list[str]) -> dict[int, str]:
    """Rows the fitted curves do not cover (unseen names or configurations), with the first reason of each."""
    reasons: dict[int, str] = {}
    for fitted in models.targets.values():
        X = fitted.frame(raw, source, where)
        known = getattr(fitted.model, "categories_", {}) or {}
        for col, values in known.items():
            if col not in X.columns:
                continue
            seen = set(values)
            for i, v in enumerate(X[col]):
                if str(v) not in seen:
                    reasons.setdefault(i, f"{col} {str(v)!r} is not in the fitted profiles")
        curves = getattr(fitted.model, "curves_", None)
        if curves is None:  # MaxBatchModel: a line per profiled configuration
            curves = getattr(fitted.model, "lines_", None)
        groups = getattr(fitted.model, "group_index_", None)
        check = getattr(fitted.model, "_check_predict", None)
        if curves is None or groups is None or check is None:
            continue
        encoded = check(X)
        for i, row in enumerate(encoded):
            if tuple(float(row[j]) for j in groups) not in curves:
                shown = ", ".join(f"{fitted.features[j]}={X.iloc[i, j]}" for j in groups)
                reasons.setdefault(i, f"no fitted configuration {shown}")
    return reasons


def served_by(models: Any, raw: pd.DataFrame, source: str, where: list[str]) -> dict[int, str]:
    """Rows the latency model does not serve from a profiled configuration, each with the route that serves it
    (a key of :data:`servopt.performance.work_latency.ROUTES`); models without routes: ``"fallback"`` for every
    row :func:`extrapolated_rows` flags."""
    fitted = models.targets.get("latency")
    routes = getattr(getattr(fitted, "model", None), "routes", None)
    if routes is None:
        return {i: "fallback" for i in extrapolated_rows(models, raw, source, where)}
    X = fitted.frame(raw, source, where)
    return {i: str(r) for i, r in enumerate(routes(X)) if r != "configuration"}
