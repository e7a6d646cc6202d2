"""Exact table lookup behind the estimator interface: profiled points only, no interpolation."""

from __future__ import annotations

from typing import Any

import numpy as np

from servopt.exceptions import ValidationError
from servopt.performance._base import ProfileRegressor

__all__ = ["TableModel"]


class TableModel(ProfileRegressor):
    """Returns the profiled value of each row; a row that was not profiled is an error.

    Problems that must use raw profiled points take this model where others take a fitted one. Two training rows
    with equal features must have equal targets.

    Attributes
    ----------
    table_ : dict
        Feature values (tuple) -> target.

    Examples
    --------
    >>> model = TableModel().fit([[1.0], [8.0]], [9.3, 10.1])
    >>> model.predict([[8.0]]).tolist()
    [10.1]
    >>> model.predict([[4.0]])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    servopt.exceptions.ValidationError: TableModel: no profiled point at x0=4 (row 1); a table does not ...
    """

    def fit(self, X: Any, y: Any) -> TableModel:
        """Store every (features -> target) pair.

        Raises
        ------
        ValidationError
            Two rows with equal features and different targets.
        """
        X, y = self._validate(X, y, reset=True)
        table: dict[tuple[float, ...], float] = {}
        for i, (row, value) in enumerate(zip(map(tuple, X.tolist()), y.tolist())):
            if row in table and table[row] != value:
                raise ValidationError(f"TableModel: row {i + 1} repeats the point {self._describe(row)} with a "
                                      f"different value ({table[row]!r} vs {value!r})")
            table[row] = value
        self.table_ = table
        return self

    def _describe(self, row: tuple[float, ...]) -> str:
        names = self._feature_names()
        categories = getattr(self, "categories_", {})
        parts = []
        for name, value in zip(names, row):
            if name in categories and 0 <= value < len(categories[name]):
                parts.append(f"{name}={categories[name][int(value)]}")
            else:
                parts.append(f"{name}={value:g}")
        return ", ".join(parts)

    def predict(self, X: Any) -> np.ndarray:
        """The profiled value of each row.

        Raises
        ------
        ValidationError
            A row that was not profiled (the message lists profiled points).
        """
        X = self._check_predict(X)
        out = np.empty(len(X))
        for i, row in enumerate(map(tuple, X.tolist())):
            value = self.table_.get(row)
            if value is None:
                known = "; ".join(self._describe(r) for r in list(self.table_)[:10])
                more = f" ... ({len(self.table_)} in all)" if len(self.table_) > 10 else ""
                raise ValidationError(f"TableModel: no profiled point at {self._describe(row)} (row {i + 1}); a "
                                      f"table does not interpolate; profiled points: {known}{more}")
            out[i] = value
        return out
