"""Throughput capacity (RPS within a latency SLO) as a function of the cores given to a replica."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LinearRegression

from servopt.exceptions import ValidationError
from servopt.performance._base import ProfileRegressor, group_index, predict_by_group
from servopt.performance._curves import CAPACITY_CURVES, Quadratic, fit_capacity_curve

__all__ = ["CapacityModel"]


class CapacityModel(ProfileRegressor):
    """Capacity vs cores: a low-order curve per variant, scaled by a headroom factor.

    Rows that share every feature except the cores form a group (a variant at one SLA); each group gets its own
    curve in cores. ``curve="average"`` (the default) is the mean of three least-squares fits, the line, the line
    through the origin and the quadratic: on InfAdapter's profile it predicts held-out core counts with 4.9 %
    MAPE where InfAdapter's line gets 5.5 % (``docs/performance-models.md``). ``curve="line"`` is InfAdapter's
    least-squares line ``capacity = slope * cores + intercept``. A group with one core count scales in
    proportion to the cores. Groups never seen in ``fit`` are predicted by ``estimator``, a regressor on all
    features (default: a linear model). With ``estimator`` given, it is used for every row instead of the
    curves. Predictions are ``headroom`` times the capacity, never below 0 (InfAdapter serves 0.8 of it).

    Parameters
    ----------
    estimator : regressor, optional
        See above.
    headroom : float, default 1.0
        Factor applied to every prediction.
    curve : {"average", "line"}, default "average"
        The per-group curve, see above.
    cores_feature : str or int, optional
        Default: the column named ``cores``, or column 0 of an unnamed array.

    Attributes
    ----------
    curves_ : dict
        Group key -> :class:`~servopt.performance._curves.Quadratic` (``curvature`` 0 for a line; empty when
        ``estimator`` is given).

    Examples
    --------
    >>> import numpy as np
    >>> cores = np.array([1, 2, 4, 8, 16.0])
    >>> model = CapacityModel(headroom=0.8, curve="line").fit(cores[:, None], 24.0 * cores - 6)
    >>> model.predict([[10.0]]).round(1).tolist()
    [187.2]
    """

    def __init__(self, estimator: Any = None, headroom: float = 1.0, *, curve: str = "average",
                 cores_feature: Any = None) -> None:
        self.estimator = estimator
        self.headroom = headroom
        self.curve = curve
        self.cores_feature = cores_feature

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        return tags

    def fit(self, X: Any, y: Any) -> CapacityModel:
        """Fit one curve per group (or ``estimator`` on everything)."""
        if self.curve not in CAPACITY_CURVES:
            raise ValidationError(f"CapacityModel: curve={self.curve!r}: expected one of {', '.join(CAPACITY_CURVES)}")
        X, y = self._validate(X, y, reset=True)
        if np.any(y < 0):
            raise ValidationError(f"CapacityModel: capacities must be >= 0, got {float(y.min())!r}")
        self.cores_index_ = self._column(self.cores_feature, "cores", 0, "cores_feature")
        if self.cores_index_ is None:
            raise ValidationError("CapacityModel: no 'cores' feature; name it with cores_feature=")
        self.group_index_ = [i for i in range(X.shape[1]) if i != self.cores_index_]
        self.curves_: dict[tuple[float, ...], Quadratic] = {}
        if self.estimator is None:
            keys, inverse = group_index(X, self.group_index_)
            cores = X[:, self.cores_index_]
            for g, key in enumerate(keys):
                rows = inverse == g
                self.curves_[key] = fit_capacity_curve(cores[rows], y[rows], self.curve)
        self.estimator_ = clone(self.estimator if self.estimator is not None else LinearRegression())
        self.estimator_.fit(X, y)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """``headroom`` x capacity for each row, at least 0."""
        X = self._check_predict(X)
        out = predict_by_group(X, self.group_index_, self.cores_index_, self.curves_, self.estimator_.predict)
        return np.maximum(self.headroom * out, 0.0)
