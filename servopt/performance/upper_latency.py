"""Upper ends of latency prediction intervals for planning (``latency_quantile:`` in problem files).

The split-conformal intervals are those of :mod:`servopt.performance.uncertainty`, from the leave-one-batch-out
residuals ``servopt fit`` computes (:func:`servopt.performance.evaluate.fit_profile`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError
from servopt.performance.evaluate import fit_profile
from servopt.performance.uncertainty import NO_RESIDUALS, UPPER_QUANTILE_ABOVE, check_quantile, known

__all__ = ["UpperLatency"]


class UpperLatency:
    """One-sided upper latency bounds at ``quantile`` q, from one profile (fitted once).

    The model is :class:`~servopt.performance.LatencyModel` fitted on every row of ``frame`` with a latency (as
    ``servopt fit --latency-model hinge --level 2q-1`` fits it): its curve of a profiled configuration is the
    curve ``performance: fit`` plans on, and the bound is the upper end of its split-conformal interval at level
    ``2q - 1``, whose upper end is the held-out residuals' q-quantile (rank ceil((n + 1) q)), from the
    leave-one-batch-out residuals of the whole profile. (Until this was found by a walkthrough, the interval's
    level was q itself, so q = 0.9 planned on the 0.95-quantile and q = 0.95 on the largest residual.)

    Parameters
    ----------
    frame : pandas.DataFrame
        A validated profile (:attr:`servopt.profiles.ProfileTable.frame`).
    quantile : float
        The quantile bounded, in (0.5, 1).
    source : str
        Name of the profile in messages and in the margin record.
    column : str, default "latency_ms"
        The latency column to fit (e.g. ``latency_p99_ms``); it is fitted as the latency target.
    context : str, optional
        Where the quantile was asked for, to begin the messages with (e.g. ``"p.yaml: key 'latency_quantile'"``);
        default: the profile and the key ``latency_quantile``.

    Raises
    ------
    ValidationError
        (at the first :meth:`upper`) The profile leaves no held-out residual (:data:`~.uncertainty.NO_RESIDUALS`:
        one configuration at two batch sizes), so there is no bound at any level: refused rather than planned on
        the point prediction.
    """

    def __init__(self, frame: pd.DataFrame, quantile: float, source: str, column: str = "latency_ms",
                 context: str | None = None) -> None:
        self.frame = frame
        self.quantile = check_quantile(quantile, source, "quantile", above=UPPER_QUANTILE_ABOVE)
        self.source = source
        self.column = column
        self.context = context
        self._models: Any = None

    @property
    def level(self) -> float:
        """The level of the two-sided interval whose upper end is the ``quantile``: ``2 quantile - 1``."""
        return 2.0 * self.quantile - 1.0

    def _fitted(self) -> Any:
        if self._models is None:
            data = self.frame
            if self.column != "latency_ms":
                data = data.drop(columns=["latency_ms"], errors="ignore").rename(columns={self.column: "latency_ms"})
            models, _ = fit_profile(data, source=self.source, targets=["latency"], latency_model="hinge",
                                    level=self.level)
            interval = models.targets["latency"].interval
            if interval is None:
                raise ValidationError(f"{self.source}: no configuration is profiled at two or more batch sizes, so "
                                      "the latency model cannot be cross-validated and has no prediction interval")
            if not known(interval["interior"]):
                where = self.context or f"{self.source}: key 'latency_quantile'"
                most = int(data.groupby([c for c in ("model", "variant", "hardware", "cores", "input_size")
                                         if c in data.columns], dropna=False)["batch_size"].nunique().max())
                raise ValidationError(
                    f"{where}: {self.quantile:g}: no upper bound on {self.column} from {self.source}: {NO_RESIDUALS}; "
                    f"its configurations have at most {most} batch sizes ({len(data)} rows in all). Profile 3 or "
                    "more batch sizes, or remove latency_quantile to plan on the fitted latency")
            self._models = models
        return self._models

    def upper(self, rows: pd.DataFrame, batch_sizes: Sequence[int]) -> tuple[dict[int, float], dict[str, Any]]:
        """Upper latency bounds of the configuration of ``rows`` (rows of the profile) at ``batch_sizes``.

        Returns ``({batch size: latency_ms_hi}, record)``: ``record`` has the interval (``level``, the factors
        inside the profiles and for extrapolations, how many held-out residuals each rests on and whether the
        bound holds at the level, ``exact``; ``factor_per_octave``: the upper factor per octave beyond the
        profiled batch range, raised to the distance of a batch size further out than one octave) and per batch
        size the point prediction, the bound, the factor used
        and where the batch size (``batch``), input size and hardware sit in the profile (``profiled``,
        ``interpolated``, ``extrapolated``, ``unseen``); ``exact`` covers the kinds of factor used (an
        extrapolation takes the ``edge`` one).
        """
        models = self._fitted()
        fitted = models.targets["latency"]
        sizes = [int(b) for b in batch_sizes]
        query = rows.iloc[[0] * len(sizes)].reset_index(drop=True).copy()
        query["batch_size"] = sizes
        predicted = models.predict(query, source=self.source, targets=["latency"], intervals=True)
        where = models.coverage(query, source=self.source)
        point = predicted["latency_ms"].to_numpy(dtype=float)
        high = predicted["latency_ms_hi"].to_numpy(dtype=float)
        iv = fitted.interval
        outside = np.asarray(where.isin(["extrapolated", "unseen"]).any(axis=1)) if len(where.columns) else \
            np.zeros(len(sizes), dtype=bool)
        used = {"edge" if o else "interior" for o in outside}
        batches = []
        for i, b in enumerate(sizes):
            entry: dict[str, Any] = {"batch_size": b, "latency_ms": float(point[i]), "latency_ms_hi": float(high[i]),
                                     "factor": float(high[i] / point[i])}
            entry.update({str(c): str(where[c].iloc[i]) for c in where.columns if c != "batch_size"})
            entry["batch"] = str(where["batch_size"].iloc[i]) if "batch_size" in where.columns else "profiled"
            batches.append(entry)
        record = {
            "source": self.source, "column": self.column, "level": self.quantile, "interval_level": float(iv["level"]),
            "factor_interior": float(iv["interior"]["hi"]), "factor_edge": float(iv["edge"]["hi"]),
            "factor_per_octave": float(iv["octave"]["hi"]) if "octave" in iv else None,
            "residuals": {"interior": int(iv["interior"]["n"]), "edge": int(iv["edge"]["n"])},
            "exact": all(bool(iv[part]["exact"]) for part in used), "batches": batches,
        }
        return {b: float(high[i]) for i, b in enumerate(sizes)}, record
