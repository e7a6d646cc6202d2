"""Latency of one batch as a function of batch size and context (input size, cores, hardware, labels)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from servopt.exceptions import ValidationError
from servopt.performance._base import ProfileRegressor, group_index, set_monotone
from servopt.performance._curves import MIN_FREE_POINTS, ROBUST_SCALE, Curve, fit_curves
from servopt.performance.warmup import default_gbm

__all__ = ["LatencyModel", "monotone_in_batch"]


class LatencyModel(ProfileRegressor):
    """Latency of one batch: a floored curve per configuration, a monotone regressor for unseen ones.

    Rows that share every feature except the batch size (and ``hw.*`` features) form a *group*: one measured
    latency-vs-batch curve, e.g. EfficientNet-B0 at 224 px in TF32 on an A100. Each group gets its own soft-hinge
    curve ``L(b) = F * (1 + (b / k) ** p) ** (1 / p)`` (see :mod:`servopt.performance._curves`): a floor ``F`` at
    small batch, a line through the origin once the device saturates. Rows of a group never seen in ``fit`` are
    predicted by ``estimator``, a regressor of log latency on all features, constrained to be non-decreasing in
    batch size where the estimator supports it (``monotonic_cst``, ``monotone_constraints``) and made so in any
    case by taking the running maximum over the training batch sizes.

    Parameters
    ----------
    estimator : regressor, optional
        For unseen groups. Default: LightGBM (:func:`~servopt.performance.warmup.default_gbm`) with a monotone
        constraint on batch size. scikit-learn's regressors work too (``HistGradientBoostingRegressor`` and
        ``RandomForestRegressor`` get ``monotonic_cst``).
    batch_feature : str or int, optional
        The batch-size feature. Default: the column named ``batch_size``, or column 0 of an unnamed array.
        Batch values at or below 0 sit on the curve's floor.
    group_features : list of str or int, optional
        Features that define a group. Default: every feature except the batch size and names starting ``hw.``.
    robust_scale : float, default 0.05
        Scale of the soft-L1 loss on log latency used to fit the curves.
    min_free_points : int, default 5
        Distinct batch sizes a group needs before the curve's knee sharpness is fitted (else it is 1).

    Attributes
    ----------
    curves_ : dict
        Group key (tuple of feature values) -> :class:`~servopt.performance._curves.Curve`.
    estimator_ : regressor
        The fitted regressor for unseen groups.
    batch_knots_ : ndarray
        Distinct training batch sizes (where the running maximum of ``estimator_`` is taken).

    Examples
    --------
    >>> import numpy as np
    >>> b = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256.0])
    >>> model = LatencyModel().fit(b[:, None], 9.0 * np.maximum(1, b / 32))
    >>> bool(np.all(np.diff(model.predict(np.arange(1, 300.0)[:, None])) >= 0))
    True
    """

    def __init__(self, estimator: Any = None, *, batch_feature: Any = None, group_features: Any = None,
                 robust_scale: float = ROBUST_SCALE, min_free_points: int = MIN_FREE_POINTS) -> None:
        self.estimator = estimator
        self.batch_feature = batch_feature
        self.group_features = group_features
        self.robust_scale = robust_scale
        self.min_free_points = min_free_points

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True  # latencies
        return tags

    def fit(self, X: Any, y: Any) -> LatencyModel:
        """Fit one curve per group and the regressor for unseen groups.

        Raises
        ------
        ValidationError
            Non-positive latencies, or the usual malformed input.
        """
        X, y = self._validate(X, y, reset=True)
        self.batch_index_ = self._column(self.batch_feature, "batch_size", 0, "batch_feature")
        if self.batch_index_ is None:
            raise ValidationError("LatencyModel: no 'batch_size' feature; name it with batch_feature=")
        if np.any(y <= 0):
            raise ValidationError(f"LatencyModel: latencies must be > 0, got {float(y.min())!r}")
        self.group_index_ = self._group_columns()
        keys, inverse = group_index(X, self.group_index_)
        batch = X[:, self.batch_index_]
        curves = fit_curves([batch[inverse == g] for g in range(len(keys))],
                            [y[inverse == g] for g in range(len(keys))], robust_scale=self.robust_scale,
                            min_free_points=self.min_free_points)
        self.curves_ = dict(zip(keys, curves))
        base = self.estimator if self.estimator is not None else default_gbm()
        self.estimator_ = set_monotone(base, X.shape[1], self.batch_index_)
        self.estimator_.fit(X, np.log(y))
        self.batch_knots_ = np.unique(batch)
        return self

    def _group_columns(self) -> list[int]:
        names = self._feature_names()
        if self.group_features is None:
            return [i for i, name in enumerate(names) if i != self.batch_index_ and not name.startswith("hw.")]
        columns = [self._column(g, "", None, "group_features") for g in self.group_features]
        if self.batch_index_ in columns:
            raise ValidationError("group_features must not include the batch-size feature")
        return [c for c in columns if c is not None]

    def predict(self, X: Any) -> np.ndarray:
        """Latency of one batch for each row (same unit as the fitted target, ms in profiles)."""
        X = self._check_predict(X)
        out = np.empty(len(X))
        keys, inverse = group_index(X, self.group_index_)
        unseen = np.zeros(len(X), dtype=bool)
        batch = X[:, self.batch_index_]
        for g, key in enumerate(keys):
            rows = inverse == g
            curve: Curve | None = self.curves_.get(key)
            if curve is None:
                unseen |= rows
            else:
                out[rows] = curve(batch[rows])
        if unseen.any():
            out[unseen] = monotone_in_batch(self.estimator_, X[unseen], self.batch_index_, self.batch_knots_)
        return out

    def group_curve(self, key: tuple[float, ...]) -> Curve:
        """The fitted curve of one group (key: the group's feature values, in feature order)."""
        check_is_fitted(self, "curves_")
        return self.curves_[tuple(map(float, key))]


def monotone_in_batch(estimator: Any, X: np.ndarray, batch_index: int, knots: np.ndarray,
                      log_target: bool = True) -> np.ndarray:
    """Predictions of ``estimator`` made non-decreasing in the batch feature.

    For each row, the estimator is evaluated at every training batch size ``knots`` (other features kept), the
    running maximum is taken, and the row's own batch size is interpolated linearly between knots; below the
    smallest knot the value at it is used, above the largest the value grows in proportion to the batch size
    (a saturated device).
    """
    n, m = len(X), len(knots)
    grid = np.repeat(X, m, axis=0)
    grid[:, batch_index] = np.tile(knots, n)
    values = estimator.predict(grid).reshape(n, m)
    if log_target:
        values = np.exp(values)
    values = np.maximum.accumulate(values, axis=1)
    b = X[:, batch_index]
    pos = np.clip(np.searchsorted(knots, b, side="right") - 1, 0, max(m - 2, 0))
    if m == 1:
        out = values[:, 0].copy()
    else:
        lo, hi = knots[pos], knots[pos + 1]
        frac = np.clip((b - lo) / (hi - lo), 0.0, 1.0)
        rows = np.arange(n)
        out = values[rows, pos] + frac * (values[rows, pos + 1] - values[rows, pos])
    top = knots[-1]
    above = b > top
    if top > 0 and above.any():
        out[above] = values[above, -1] * b[above] / top
    return out
