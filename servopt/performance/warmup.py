"""Warm-up (first-batch) time from batch size, input size and hardware-monitoring features."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from servopt.exceptions import ValidationError
from servopt.performance._base import ProfileRegressor

__all__ = ["WarmupModel", "default_gbm"]


def default_gbm() -> Any:
    """LightGBM regressor used by default: small trees, gain importances, one thread, deterministic."""
    from lightgbm import LGBMRegressor

    return LGBMRegressor(n_estimators=200, learning_rate=0.05, num_leaves=15, min_child_samples=5,
                         importance_type="gain", n_jobs=1, random_state=0, deterministic=True,
                         force_row_wise=True, verbose=-1)


class WarmupModel(ProfileRegressor):
    """Time of the first batch after a model is loaded, regressed on log scale, with feature importances.

    Parameters
    ----------
    estimator : regressor, optional
        Default: LightGBM (:func:`default_gbm`). Any scikit-learn regressor works; when it has no
        ``feature_importances_`` the importances are permutation importances on the training data.
    n_repeats : int, default 5
        Permutation repeats, used only when the estimator has no importances of its own.

    Attributes
    ----------
    estimator_ : regressor
        Fitted on ``log(warm-up time)``.
    feature_importances_ : ndarray
        Non-negative, summing to 1 (all zero if no feature helps), aligned with ``feature_names_in_`` (DataFrame
        input) or the column order.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(1, 10, size=(200, 3))
    >>> model = WarmupModel().fit(X, 100 + 50 * X[:, 1])
    >>> int(np.argmax(model.feature_importances_))
    1
    """

    def __init__(self, estimator: Any = None, *, n_repeats: int = 5) -> None:
        self.estimator = estimator
        self.n_repeats = n_repeats

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        return tags

    def fit(self, X: Any, y: Any) -> WarmupModel:
        """Fit the regressor on log warm-up time and compute feature importances."""
        X, y = self._validate(X, y, reset=True)
        if np.any(y <= 0):
            raise ValidationError(f"WarmupModel: warm-up times must be > 0, got {float(y.min())!r}")
        self.estimator_ = clone(self.estimator if self.estimator is not None else default_gbm())
        target = np.log(y)
        self.estimator_.fit(X, target)
        raw = getattr(self.estimator_, "feature_importances_", None)
        if raw is None or len(raw) != X.shape[1]:
            from sklearn.inspection import permutation_importance

            raw = permutation_importance(self.estimator_, X, target, n_repeats=self.n_repeats,
                                         random_state=0).importances_mean
        raw = np.clip(np.asarray(raw, dtype=float), 0.0, None)
        total = raw.sum()
        self.feature_importances_ = raw / total if total > 0 else raw
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Warm-up time of each row (same unit as the fitted target, ms in profiles)."""
        X = self._check_predict(X)
        return np.exp(self.estimator_.predict(X))

    def top_features(self, n: int = 15) -> list[tuple[str, float]]:
        """The ``n`` most important features as (name, importance), most important first."""
        check_is_fitted(self)
        order = np.argsort(-self.feature_importances_, kind="stable")[:n]
        names = self._feature_names()
        return [(names[i], float(self.feature_importances_[i])) for i in order]

