"""Device memory as a function of batch and input size, and the largest batch that fits."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.utils.validation import check_is_fitted

from servopt.exceptions import ValidationError
from servopt.performance._base import ProfileRegressor, group_index, predict_by_group
from servopt.performance._curves import Line, fit_line

__all__ = ["MaxBatchModel"]


class MaxBatchModel(ProfileRegressor):
    """Peak device memory (``memory_mb``) from the batch size, the input size and context.

    Memory grows linearly in the batch: weights and workspace, plus activations per item. Rows that share every
    feature except the batch size (and ``hw.*`` features) form a group with its own least-squares line in batch
    size. Groups never seen in ``fit`` (a new input size, say) are predicted by ``estimator``, a regressor on the
    features plus ``batch * input_size**2`` (activations grow with the pixels of each input); by default a
    least-squares linear model, which extrapolates linearly in the batch, as memory does.

    Parameters
    ----------
    estimator : regressor, optional
        For unseen groups. Default ``LinearRegression()``.
    batch_feature, size_feature : str or int, optional
        Default: the columns named ``batch_size`` and ``input_size``; for unnamed arrays, columns 0 and 1.
    max_batch_size : int, default 4096
        Largest batch :meth:`max_batch` considers.
    upper_quantile : float, optional
        If given (e.g. 0.95), :meth:`max_batch` compares ``margin_ x`` the prediction with the limit, where
        ``margin_`` (>= 1) is the split-conformal ``upper_quantile`` of ``measured / predicted`` over every
        configuration's batch sizes, each left out of its line in turn (the largest one is an extrapolation), so
        the largest batch errs towards too small. Default: no margin (``margin_`` = 1).
    block_mb : float, default 0
        Allocator granularity: :meth:`max_batch` rounds the predicted memory up to a multiple of it (PyTorch's
        caching allocator reserves 2 MiB blocks for large tensors: ``block_mb=2``). 0: no rounding.

    Attributes
    ----------
    lines_ : dict
        Group key -> :class:`~servopt.performance._curves.Line` (memory vs batch size).
    estimator_ : regressor
        The fitted regressor for unseen groups.
    margin_ : float
        Factor >= 1 applied to predictions in :meth:`max_batch` (see ``upper_quantile``).

    Examples
    --------
    >>> import numpy as np
    >>> b = np.array([1, 2, 4, 8, 16, 32.0]); s = np.full(6, 224.0)
    >>> model = MaxBatchModel().fit(np.c_[b, s], 500 + 20 * b)
    >>> model.max_batch(224, memory_limit_mb=1000)
    25
    """

    def __init__(self, estimator: Any = None, *, batch_feature: Any = None, size_feature: Any = None,
                 max_batch_size: int = 4096, upper_quantile: float | None = None, block_mb: float = 0.0) -> None:
        self.estimator = estimator
        self.batch_feature = batch_feature
        self.size_feature = size_feature
        self.max_batch_size = max_batch_size
        self.upper_quantile = upper_quantile
        self.block_mb = block_mb

    def _design(self, X: np.ndarray) -> np.ndarray:
        if self.size_index_ is None:
            return X
        return np.c_[X, X[:, self.batch_index_] * X[:, self.size_index_] ** 2]

    def fit(self, X: Any, y: Any) -> MaxBatchModel:
        """Fit memory against the features (and batch x input size squared)."""
        X, y = self._validate(X, y, reset=True)
        self.batch_index_ = self._column(self.batch_feature, "batch_size", 0, "batch_feature")
        if self.batch_index_ is None:
            raise ValidationError("MaxBatchModel: no 'batch_size' feature; name it with batch_feature=")
        self.size_index_ = self._column(self.size_feature, "input_size", 1, "size_feature")
        if self.size_index_ == self.batch_index_:
            self.size_index_ = None
        names = self._feature_names()
        self.group_index_ = [i for i, name in enumerate(names) if i != self.batch_index_ and not name.startswith(
            "hw.")]
        keys, inverse = group_index(X, self.group_index_)
        batch = X[:, self.batch_index_]
        self.lines_: dict[tuple[float, ...], Line] = {
            key: fit_line(batch[inverse == g], y[inverse == g]) for g, key in enumerate(keys)}
        self.estimator_ = clone(self.estimator if self.estimator is not None else LinearRegression())
        self.estimator_.fit(self._design(X), y)
        self.margin_ = self._margin(batch, y, inverse)
        return self

    def _margin(self, batch: np.ndarray, y: np.ndarray, inverse: np.ndarray) -> float:
        if self.upper_quantile is None:
            return 1.0
        if not 0 < self.upper_quantile < 1:
            raise ValidationError(f"MaxBatchModel: upper_quantile={self.upper_quantile!r}: expected a number in (0, 1)")
        ratios = []
        for g in np.unique(inverse):
            b, m = batch[inverse == g], y[inverse == g]
            for value in np.unique(b):
                rest = b != value
                if np.unique(b[rest]).size < 2:
                    continue
                pred = fit_line(b[rest], m[rest])(b[~rest])
                ok = pred > 0
                ratios.extend(m[~rest][ok] / pred[ok])
        if not ratios:
            return 1.0
        r = np.sort(np.asarray(ratios))
        rank = min(int(np.ceil((r.size + 1) * self.upper_quantile)), r.size)
        return float(max(1.0, r[rank - 1]))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted peak memory of each row (MB in profiles)."""
        X = self._check_predict(X)
        return predict_by_group(X, self.group_index_, self.batch_index_, self.lines_,
                                lambda rows: self.estimator_.predict(self._design(rows)))

    def max_batch(self, input_size: float | None, memory_limit_mb: float, **features: Any) -> int:
        """The largest batch size predicted to fit in ``memory_limit_mb`` (0 if even batch 1 does not fit).

        Every batch from 1 up to the answer is predicted to fit (the first batch that does not fit ends the
        search). Other features of the model are given by name in ``features``.

        Raises
        ------
        ValidationError
            A feature the model needs is not given.
        """
        check_is_fitted(self)
        names = self._feature_names()
        sizes = np.arange(1, int(self.max_batch_size) + 1, dtype=float)
        row: dict[str, Any] = {}
        for i, name in enumerate(names):
            if i == self.batch_index_:
                continue
            if i == self.size_index_:
                if input_size is None:
                    raise ValidationError(f"max_batch: the model needs the input size (feature {name!r})")
                row[name] = input_size
            elif name in features:
                row[name] = features[name]
            else:
                raise ValidationError(f"max_batch: give a value for feature {name!r} (needed: "
                                 f"{', '.join(n for j, n in enumerate(names) if j != self.batch_index_)})")
        if hasattr(self, "feature_names_in_"):
            import pandas as pd

            X = pd.DataFrame({name: (sizes if i == self.batch_index_ else [row[name]] * len(sizes))
                              for i, name in enumerate(names)})
        else:
            X = np.empty((len(sizes), len(names)))
            for i, name in enumerate(names):
                X[:, i] = sizes if i == self.batch_index_ else float(row[name])
        need = self.predict(X) * self.margin_
        if self.block_mb > 0:
            need = np.ceil(need / self.block_mb) * self.block_mb
        fits = need <= memory_limit_mb
        if fits.all():
            return int(sizes[-1])
        return int(np.argmin(fits))
