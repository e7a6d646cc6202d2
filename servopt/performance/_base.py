"""Shared plumbing of servopt's regressors: input validation, text features, column lookup, groups.

Every model follows scikit-learn's estimator contract. They take numeric arrays, or pandas DataFrames that may
also hold text columns (``model``, ``hardware``, ``precision``, ...): text columns are encoded as category codes
learned in ``fit`` (unseen text becomes -1) before scikit-learn's own validation runs.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from servopt.exceptions import ValidationError

__all__ = ["ProfileRegressor", "set_monotone", "group_index", "neighbour_sizes", "predict_by_group"]


class ProfileRegressor(RegressorMixin, BaseEstimator):
    """Base class: text-column encoding, validation and feature lookup. Not used on its own."""

    #: constructor parameters added after models of the class were first saved (``servopt fit -o``), each with the
    #: value that describes what a model saved before it existed does. A saved model's fitted attributes decide its
    #: predictions; its parameters fill ``get_params``, ``repr`` and ``clone``, which would fail on the missing
    #: attribute. A parameter missing from a saved model and not listed here takes its default.
    _params_before: ClassVar[dict[str, Any]] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for name in self._get_param_names():
            if name not in self.__dict__:
                default = inspect.signature(type(self).__init__).parameters[name].default
                self.__dict__[name] = self._params_before.get(name, default)

    def _validate(self, X: Any, y: Any = "no_validation", *, reset: bool) -> Any:
        if reset:
            self.categories_ = _learn_categories(X)
        X = _encode(X, getattr(self, "categories_", {}), type(self).__name__)
        if isinstance(y, str) and y == "no_validation":
            return validate_data(self, X, reset=reset, dtype=np.float64)
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float64, y_numeric=True)
        return X, np.asarray(y, dtype=np.float64)

    def _check_predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self._validate(X, reset=False)

    def _column(self, spec: Any, default_name: str, default_index: int | None, role: str) -> int | None:
        """Index of the feature named or numbered ``spec``; ``None`` picks ``default_name`` or ``default_index``."""
        names = list(getattr(self, "feature_names_in_", []))
        n = self.n_features_in_
        if spec is None:
            if default_name in names:
                return names.index(default_name)
            if default_index is not None and default_index < n and not names:
                return default_index
            return None
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            if not 0 <= spec < n:
                raise ValidationError(f"{role}={spec}: X has {n} features")
            return int(spec)
        if spec not in names:
            raise ValidationError(f"{role}={spec!r}: no such feature; features: {', '.join(map(str, names)) or 'unnamed'}")
        return names.index(spec)

    def _feature_names(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        return [str(n) for n in names] if names is not None else [f"x{i}" for i in range(self.n_features_in_)]


def _is_text(column: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def _learn_categories(X: Any) -> dict[str, list[str]]:
    if not isinstance(X, pd.DataFrame):
        return {}
    return {str(c): sorted({str(v) for v in X[c].dropna()}) for c in X.columns if _is_text(X[c])}


def _encode(X: Any, categories: dict[str, list[str]], who: str) -> Any:
    if not categories:
        return X
    if not isinstance(X, pd.DataFrame):
        raise ValidationError(f"{who} was fitted on a DataFrame with text columns ({', '.join(categories)}); pass a "
                         "DataFrame with the same columns")
    X = X.copy()
    for col, values in categories.items():
        if col not in X.columns:
            continue  # validate_data reports the missing feature name
        code = {v: float(i) for i, v in enumerate(values)}
        X[col] = [code.get(str(v), -1.0) if v is not None and not pd.isna(v) else -1.0 for v in X[col]]
    return X


def set_monotone(estimator: Any, n_features: int, index: int) -> Any:
    """A clone of ``estimator`` constrained to be non-decreasing in feature ``index``, where it supports it.

    scikit-learn's histogram gradient boosting takes ``monotonic_cst``, LightGBM and XGBoost take
    ``monotone_constraints``; a constraint the caller already set is kept. Other estimators are returned unchanged
    (servopt's models enforce monotonicity around them).
    """
    estimator = clone(estimator)
    params = estimator.get_params(deep=False)
    constraint = [0] * n_features
    constraint[index] = 1
    if "monotonic_cst" in params:
        if params["monotonic_cst"] is None:
            estimator.set_params(monotonic_cst=constraint)
    elif type(estimator).__module__.split(".")[0] in ("lightgbm", "xgboost"):
        if params.get("monotone_constraints") is None:
            estimator.set_params(monotone_constraints=constraint)
    return estimator


def group_index(X: np.ndarray, columns: list[int]) -> tuple[list[tuple[float, ...]], np.ndarray]:
    """Distinct rows of ``X[:, columns]`` and each row's group number."""
    if not columns:
        return [()], np.zeros(len(X), dtype=int)
    part = X[:, columns]
    if len(part) and bool((part == part[0]).all()):  # one configuration (a largest-batch grid): no sort needed
        return [tuple(map(float, part[0]))], np.zeros(len(X), dtype=int)
    keys, inverse = np.unique(part, axis=0, return_inverse=True)
    return [tuple(map(float, k)) for k in keys], inverse.reshape(-1)


def neighbour_sizes(profiled: Any, key: tuple[float, ...], position: int
                    ) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The configurations among ``profiled`` (keys like ``key``) nearest to ``key`` in the input size (at
    ``position`` of the key) with every other part equal: the one just below and the one just above (None where
    there is none).

    >>> neighbour_sizes([(1.0, 96.0), (1.0, 160.0), (2.0, 128.0), (1.0, 224.0)], (1.0, 128.0), 1)
    ((1.0, 96.0), (1.0, 160.0))
    """
    rest = key[:position] + key[position + 1:]
    sizes = sorted(k[position] for k in profiled if k[:position] + k[position + 1:] == rest)
    smaller = [s for s in sizes if s < key[position]]
    larger = [s for s in sizes if s > key[position]]

    def at(size: float) -> tuple[float, ...]:
        return key[:position] + (size,) + key[position + 1:]

    return (at(smaller[-1]) if smaller else None), (at(larger[0]) if larger else None)


def predict_by_group(X: np.ndarray, group_columns: list[int], x_column: int, curves: dict, fallback) -> np.ndarray:
    """Evaluate each row's group curve at ``X[:, x_column]``; rows of groups without a curve go to ``fallback``.

    ``curves`` maps a group key (see :func:`group_index`) to a callable of x; ``fallback(X_rows)`` predicts the
    rows whose group was never fitted.
    """
    out = np.empty(len(X))
    keys, inverse = group_index(X, group_columns)
    unseen = np.zeros(len(X), dtype=bool)
    for g, key in enumerate(keys):
        rows = inverse == g
        curve = curves.get(key)
        if curve is None:
            unseen |= rows
        else:
            out[rows] = curve(X[rows, x_column])
    if unseen.any():
        out[unseen] = fallback(X[unseen])
    return out

