"""Work-aware latency: a floor-plus-roofline curve in the work of a batch, pooled over input sizes.

The work of a batch is ``batch_size * gflops`` where the features hold ``gflops`` (FLOPs of one sample at its
input size, e.g. from :func:`servopt.performance.work.onnx_work`), else ``batch_size * input_size ** 2`` (pixels),
else the batch size. Per *family* (a configuration without its input size: model, variant, hardware, labels)
servopt fits

    L(w) = (F^p + max(0, a + s * w)^p)^(1/p),   -10 F <= a <= F, s >= 0, p in [1, 20]

a smooth maximum of the launch-overhead floor ``F`` and a roofline ``a + s * w``. With fewer than five distinct
works ``p = 1`` and ``a = 0``: a straight line ``F + s * w`` with non-negative intercept and slope. The curve is
non-decreasing in batch and input size. With ``a >= 0`` its log-log slope (elasticity) lies in [0, 1]; a negative
``a`` is time per sample that still grows with the batch (measured on CPUs, where a large batch overflows the
caches: ``benchmarks/fresh_cpu.py``), an elasticity above 1 past the knee that tends to 1 (the time per sample
tends to ``s`` per unit of work), never an unbounded power.

Beyond the largest profiled work ``w_max`` of a family, the fit alone may stay on the floor for ever (every point
on the floor: ``s`` ~ 0). Latency does not fall (``L >= L(w_max)``). When the fit's elasticity at ``w_max`` is
below 1/2 (the slope is not identified), servopt carries the slope over from the same variant profiled on another
GPU of :mod:`servopt.performance.hardware`, scaled by the ratio of their FP16 peaks, or, with none, takes the
midpoint of ``L(w_max)`` and the throughput bound ``L(w_max) * w / w_max`` in log space,
``L(w_max) * sqrt(w / w_max)``; the prediction is the larger of that and the fit.

Prediction: a profiled configuration (model, variant, hardware, input size, labels) uses, up to its largest profiled
batch, the in-grid curve chosen for it by nested cross-validation on its training rows (its own soft hinge in batch,
:class:`~servopt.performance.LatencyModel`; the family curve with its size correction; their geometric mean; or
interpolation: :mod:`servopt.performance._ingrid`, ``in_grid``), and beyond it the larger of that curve's value and
the measured latency (median) at the largest batch, times the growth of the family curve. The measurement is the
anchor where the curve passes below it because a smooth curve lags a tail whose time per sample still grows (fresh
CPU sets 1-4 of ``benchmarks/fresh_cpu.py``, batch x4: MAPE 7.7-8.9 % growing from the curve, 4.2-5.3 % from the
measurement). Where the configurations' latencies outgrow the family curve at the top of the grid while their time
per sample rises (``e``, the smaller of the family's mean log-log slopes in batch of measured / family curve and of
latency / batch over each configuration's three largest batches, is positive: a CPU's caches overflow and one size's
time per sample rises faster than the curve, fitted over every size, follows), the growth is multiplied by ``(b /
top) ** e`` for as many octaves as the slopes were measured over (``reach``, 2 on a grid of doublings), then held
(fresh CPU sets 1-7, batch x4: the growth of the family curve alone was 3.1-4.7 % low on average; on a GPU the time
per sample still falls there and nothing changes). Below its smallest profiled batch, where the family's profiled
works reach down to the row's work (another input size profiled at a larger batch carries it), the family curve with
the size correction, kept between the in-grid value ``L_low`` at the smallest batch ``low`` and ``L_low * b / low``
(below the grid neither latency nor throughput may fall as the batch grows); further below, the in-grid value capped
at that value where the family's works end (fresh CPU sets, batch 1 left out: a soft hinge had put a floor just
below batch 2 and predicted batch 1 84-90 % high) and, where the family's latency is proportional to the batch at
the bottom of its grid (log-log slope between each configuration's two smallest batches, mean of the family, at
least 0.9: no launch floor, as on CPUs), at the value shrinking with that slope from the smallest batch. An
unprofiled input size of a profiled family is predicted from the profiled sizes' latencies *at the same work*: per
profiled size, log latency (its monotone envelope) interpolated linearly in log work between that size's profiled
batches and carried beyond them with the growth of the family curve (``L_end * roof(w) / roof(w_end)``), then
interpolated linearly in input size between the two neighbouring profiled sizes (the nearest one beyond the ends).
On a CPU the time per unit of work depends on the work of the batch (the caches a batch overflows), so a larger
input size reaches the time per unit of work of a smaller size at a smaller batch; a correction that depends on the
size alone (the mean log residual of each profiled size, a models file saved before this) misses that step (fresh
CPU sets 1-14, each size held out: MAPE interior 4.9 -> 2.9 %, largest size 5.2 -> 4.4 %). Non-decreasing in
batch: each profiled size's curve is non-decreasing in work. An unprofiled GPU
of the datasheet table whose family was profiled on other table GPUs gets the geometric mean of their curves with
the slope scaled by the FP16 peak ratio (the floor, launch overhead, kept). Any other unprofiled family goes to the
monotone fallback regressor.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from servopt.performance._base import group_index, neighbour_sizes
from servopt.performance._curves import MIN_FREE_POINTS, ROBUST_SCALE
from servopt.performance._ingrid import Config, InGrid, check_rule, choose_in_grids
from servopt.performance.hardware import hardware_spec
from servopt.performance.latency import LatencyModel, monotone_in_batch
from servopt.performance.roofline import Roofline, fit_roofline, fit_rooflines
from servopt.performance.work_poly import WorkColumnMixin

__all__ = ["ROUTES", "Roofline", "WorkLatencyModel", "fit_roofline", "fit_rooflines"]

#: how :meth:`WorkLatencyModel.predict` serves a row (:meth:`WorkLatencyModel.routes`), in words
ROUTES = {
    "configuration": "the profiled configuration's curve",
    "family": "the family's profiled input sizes at the same work, interpolated in input size between them, "
              "extrapolated beyond them (input size not profiled)",
    "other_gpu": "the model's curves on profiled GPUs scaled by datasheet peaks (GPU not profiled)",
    "fallback": "the monotone fallback regressor",
}

#: the largest profiled batches of a configuration whose time per sample gives its family's trend beyond the grid
TREND_POINTS = 3

#: the log-log slope of latency in batch at the bottom of a family's grid (mean over its configurations' two smallest
#: batches) from which the family shows no launch floor there: below the grid, where no work of the family reaches,
#: latency shrinks with that slope (CPUs measure 0.95-1.0; GPUs and NVIDIA's tables 0-0.6)
LINEAR_BOTTOM = 0.9


def _work_curve(work: np.ndarray, latency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One profiled input size's ``(log work, log latency)``, sorted, one point per distinct work (the mean log
    latency of its rows), latency made non-decreasing in work (the envelope already is per configuration; rows of
    several configurations of one size, e.g. two label values, are pooled)."""
    lw, inverse = np.unique(np.log(np.maximum(work, 1e-300)), return_inverse=True)
    ly = np.bincount(inverse, weights=np.log(latency)) / np.bincount(inverse)
    return lw, np.maximum.accumulate(ly)


def _at_work(roof: Roofline, log_work: np.ndarray, log_latency: np.ndarray, work: np.ndarray,
             bottom: float = 0.0) -> np.ndarray:
    """Log latency of one profiled size at works ``work``: linear in log work between its points and, beyond
    them, its end point times the growth of the family curve ``roof``; below them the same, but never shrinking
    faster than the work and, where the family shows no floor at the bottom of its grid (``bottom``, its log-log
    slope there, at least ``LINEAR_BOTTOM``), at most the smallest point shrinking with that slope (a roof on its
    floor there would keep the latency of a larger work: fresh CPU sets, the smallest size held out, batch 1 was
    60 % high). Non-decreasing in work."""
    lw = np.log(np.maximum(work, 1e-300))
    out = np.interp(lw, log_work, log_latency)

    def grown(side: np.ndarray, end: int) -> np.ndarray:
        w_end = np.exp(log_work[end])
        return log_latency[end] + np.log(roof(work[side])) - np.log(roof(np.array([w_end]))[0])

    above = lw > log_work[-1]
    if above.any():
        out[above] = grown(above, -1)
    below = lw < log_work[0]
    if below.any():
        # not below proportional to the work (throughput does not grow as the batch shrinks)
        out[below] = np.maximum(grown(below, 0), log_latency[0] + lw[below] - log_work[0])
        if bottom >= LINEAR_BOTTOM:
            out[below] = np.minimum(out[below], log_latency[0] + bottom * (lw[below] - log_work[0]))
    return out


class WorkLatencyModel(WorkColumnMixin, LatencyModel):
    """Latency of one batch from the work it carries: per-configuration curves in batch, a floor-plus-roofline
    in work per family for unprofiled input sizes and for extrapolation (see :mod:`~.work_latency`).

    Parameters
    ----------
    estimator, batch_feature, group_features, robust_scale, min_free_points
        As :class:`~servopt.performance.LatencyModel` (``estimator`` is the fallback for unprofiled families).
    size_feature : str or int, optional
        Input-size feature (pixels per side). Default: the column named ``input_size``; none for unnamed arrays.
    work_feature : str or int, optional
        Per-sample work (e.g. ``gflops``). Default: the column named ``gflops`` if there is one. Rows (or a query)
        without it (0, NaN, column absent) take their family's polynomial in input size
        (:mod:`~servopt.performance.work_poly`); it never splits configurations.
    monotone_envelope : bool, default True
        Fit on the latencies clipped, per configuration, to the smallest latency measured at a larger batch
        (latency cannot fall when the batch grows: a point above a larger batch's is noise by at least the
        difference). False: fit the measurements as they are.
    in_grid : {"select", "hinge", "family", "mean", "interp"}, default "select"
        The curve of a profiled configuration up to its largest profiled batch: ``"select"`` chooses per
        configuration by leave-one-batch-out inside its training rows among its soft hinge, the family curve
        with its size correction, their geometric mean and linear interpolation
        (:mod:`servopt.performance._ingrid`, where the rule and its reason are written down); the others use
        that candidate for every configuration (``"hinge"``: the model before the choice).

    Attributes
    ----------
    families_ : dict
        Family key -> :class:`Roofline`.
    corrections_ : dict
        Family key -> (input sizes, mean log residual at each): the size correction of a profiled size's family
        curve (the in-grid candidate, below the grid).
    size_curves_ : dict
        Family key -> (input sizes, per size ``(log work, log latency)`` at its profiled batches): what an
        unprofiled input size is predicted from.
    in_grid_ : dict
        Configuration key -> :class:`~servopt.performance._ingrid.InGrid` (its ``kind`` and inner ``errors``).
    batch_min_, batch_max_, top_latency_ : dict
        Configuration key -> its smallest and largest profiled batch and the median latency fitted at the largest
        (the anchor beyond it).
    family_work_min_ : dict
        Family key -> the smallest profiled work of the family (below the grid, the family curve serves from it).
    family_bottom_ : dict
        Family key -> the log-log slope of latency in batch at the bottom of the grid (see ``LINEAR_BOTTOM``).
    family_trend_ : dict
        Family key -> ``(e, reach)``: the trend of measured / family curve at the top of the grid (log-log slope
        in batch, at most that of the time per sample; carried on beyond the grid where positive) and the octaves it
        was measured over.

    Examples
    --------
    >>> import numpy as np
    >>> b = np.array([1, 2, 4, 8, 16, 32, 64.0])
    >>> model = WorkLatencyModel().fit(b[:, None], np.full(7, 5.0))   # every point on the floor
    >>> bool(model.predict([[256.0]])[0] > 5.0 * 1.9)                 # still grows beyond batch 64
    True
    """

    #: a model saved before 26e9246 / 4c968f9: no envelope, each configuration's soft hinge in its grid
    _params_before: ClassVar[dict[str, Any]] = {"monotone_envelope": False, "in_grid": "hinge"}

    def __init__(self, estimator: Any = None, *, batch_feature: Any = None, group_features: Any = None,
                 size_feature: Any = None, work_feature: Any = None, robust_scale: float = ROBUST_SCALE,
                 min_free_points: int = MIN_FREE_POINTS, monotone_envelope: bool = True,
                 in_grid: str = "select") -> None:
        super().__init__(estimator, batch_feature=batch_feature, group_features=group_features,
                         robust_scale=robust_scale, min_free_points=min_free_points)
        self.size_feature = size_feature
        self.work_feature = work_feature
        self.monotone_envelope = monotone_envelope
        self.in_grid = in_grid

    def _envelope(self, X: Any, y: Any) -> np.ndarray:
        """Each latency clipped to the smallest latency measured at a larger batch of its configuration.

        The latency of a batch cannot fall when the batch grows (the device does at least the same work), so a
        measurement above one at a larger batch carries noise (clock ramp-up, a first run after warm-up, a
        neighbour on the machine) at least by the difference; the curves are fitted to what remains.
        """
        Xv, yv = self._validate(X, y, reset=True)
        self.batch_index_ = self._column(self.batch_feature, "batch_size", 0, "batch_feature")
        if self.batch_index_ is None:
            return yv
        keys, inverse = group_index(Xv, self._group_columns())
        batch = Xv[:, self.batch_index_]
        out = yv.copy()
        for g in range(len(keys)):
            rows = np.flatnonzero(inverse == g)
            for i in rows:
                later = rows[batch[rows] > batch[i]]
                if later.size:
                    out[i] = min(out[i], float(yv[later].min()))
        return out

    def _work(self, X: np.ndarray) -> np.ndarray:
        w = np.maximum(X[:, self.batch_index_], 0.0)
        per_sample = self._per_sample_work(X) if self.work_index_ is not None else None
        if per_sample is not None and not np.isnan(per_sample).any():
            return w * per_sample
        pixels = w
        if self.size_index_ is not None:
            size = X[:, self.size_index_]
            pixels = w * np.where(size > 0, size, 1.0) ** 2
        return pixels if per_sample is None else np.where(np.isnan(per_sample), pixels, w * per_sample)

    # ---- FLOPs where a row has none (servopt.performance.work_poly): the hooks of fit, _work and predict ----
    def _work_column_name(self) -> Any:
        return self.work_feature if self.work_feature is not None else super()._work_column_name()

    def _group_columns(self) -> list[int]:
        """As :class:`LatencyModel`, but the per-sample work never tells configurations apart (it follows the
        input size; a query may lack it)."""
        columns = super()._group_columns()
        if self.group_features is not None:
            return columns
        work = self._column(self.work_feature, "gflops", None, "work_feature")
        return [c for c in columns if c != work]

    def _per_sample_work(self, X: np.ndarray) -> np.ndarray:
        """Per-sample work of each row: recorded, else the family's polynomial in input size, else NaN."""
        from servopt.performance.work_poly import fill_work, poly_key_columns

        keys = poly_key_columns(self.family_index_, self._feature_names())
        return fill_work(X, getattr(self, "work_polys_", {}), keys, self.size_index_, self.work_index_)

    def _fit_work_polys(self, X: np.ndarray) -> dict[tuple[float, ...], Any]:
        from servopt.performance.work_poly import fit_work_polys, poly_key_columns

        if self.work_index_ is None:
            return {}
        keys = poly_key_columns(self.family_index_, self._feature_names())
        return fit_work_polys(X, keys, self.size_index_, self.work_index_)

    def fit(self, X: Any, y: Any) -> WorkLatencyModel:
        """Fit the per-configuration curves, the fallback regressor, and one roofline per family (on the monotone
        envelope of the latencies, see ``monotone_envelope``), then choose each configuration's in-grid curve
        (``in_grid``)."""
        check_rule(self.in_grid)
        X = self._with_work(X, [str(c) for c in getattr(X, "columns", [])])  # NaN work: unknown (0)
        raw = y
        if self.monotone_envelope:
            y = self._envelope(X, y)
        super().fit(X, y)
        X, y = self._validate(X, y, reset=False)
        self.size_index_ = self._column(self.size_feature, "input_size", None, "size_feature")
        self.work_index_ = self._column(self.work_feature, "gflops", None, "work_feature")
        skip = {self.size_index_, self.work_index_}
        self.family_index_ = [c for c in self.group_index_ if c not in skip]
        self.work_polys_ = self._fit_work_polys(X)
        work = self._work(X)
        keys, inverse = group_index(X, self.family_index_)
        roofs = fit_rooflines([work[inverse == g] for g in range(len(keys))],
                              [y[inverse == g] for g in range(len(keys))], robust_scale=self.robust_scale,
                              min_free_points=self.min_free_points)
        self.families_: dict[tuple[float, ...], Roofline] = dict(zip(keys, roofs))
        self._carry_slopes()
        self.corrections_: dict[tuple[float, ...], tuple[np.ndarray, np.ndarray]] = {}
        self.size_curves_: dict[tuple[float, ...], tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]] = {}
        self.batch_max_: dict[tuple[float, ...], float] = {}
        group_keys, group_of = group_index(X, self.group_index_)
        self.top_latency_: dict[tuple[float, ...], float] = {}
        self.batch_min_: dict[tuple[float, ...], float] = {}
        for g, key in enumerate(group_keys):
            rows = group_of == g
            batch = X[rows, self.batch_index_]
            self.batch_max_[key] = float(batch.max())
            self.batch_min_[key] = float(batch.min())
            self.top_latency_[key] = float(np.median(y[rows][batch == batch.max()]))
        self.family_work_min_ = {key: float(work[inverse == g].min()) for g, key in enumerate(keys)}
        self.family_trend_ = self._fit_trends(X, y, work, group_keys, group_of)
        self.family_bottom_ = self._fit_bottoms(X, y, group_keys, group_of)
        for g, key in enumerate(keys):
            rows = inverse == g
            resid = np.log(y[rows]) - np.log(self.families_[key](work[rows]))
            sizes = X[rows, self.size_index_] if self.size_index_ is not None else np.zeros(rows.sum())
            at = np.unique(sizes)
            self.corrections_[key] = (at, np.array([float(np.mean(resid[sizes == s])) for s in at]))
            self.size_curves_[key] = (at, [_work_curve(work[rows][sizes == s], y[rows][sizes == s]) for s in at])
        self._choose_in_grid(X, np.asarray(raw, dtype=np.float64).reshape(-1), y, work)
        return self

    def _family_of(self, key: tuple[float, ...]) -> tuple[float, ...]:
        """The family key (the configuration without its input size and work) of configuration ``key``."""
        return tuple(key[self.group_index_.index(c)] for c in self.family_index_)

    def _fit_trends(self, X: np.ndarray, y: np.ndarray, work: np.ndarray, group_keys: list[tuple[float, ...]],
                    group_of: np.ndarray) -> dict[tuple[float, ...], tuple[float, float]]:
        """Family key -> ``(e, reach)``: how the latency outgrows the family curve at the top of the grid and the
        octaves that was measured over. Per configuration with ``TREND_POINTS`` profiled batches, over its largest
        ones: the log-log slope in batch of (median latency / family curve), of the time per sample (median
        latency / batch), and their span in octaves; ``e`` is the smaller of the family's mean slopes (no faster
        than its time per sample rose: none where it fell, as on a GPU still amortising its launch overhead, whose
        pixel-work curve across sizes may lag one size's growth all the same), ``reach`` the mean span. Families
        without such a configuration have none."""
        slopes: dict[tuple[float, ...], list[tuple[float, float, float]]] = {}
        for g, key in enumerate(group_keys):
            rows = group_of == g
            batch, lat, w = X[rows, self.batch_index_], y[rows], work[rows]
            top = np.unique(batch)[-TREND_POINTS:]
            fam_key = self._family_of(key)
            roof = self.families_.get(fam_key)
            if top.size < TREND_POINTS or top[0] <= 0 or roof is None:
                continue
            log_lat = np.array([np.median(np.log(lat[batch == b])) for b in top])
            log_roof = np.log(roof(np.array([np.median(w[batch == b]) for b in top])))
            resid = float(np.polyfit(np.log(top), log_lat - log_roof, 1)[0])
            per_sample = float(np.polyfit(np.log(top), log_lat - np.log(top), 1)[0])
            slopes.setdefault(fam_key, []).append((resid, per_sample, float(np.log2(top[-1] / top[0]))))
        return {k: (float(min(np.mean([r[0] for r in v]), np.mean([r[1] for r in v]))),
                    float(np.mean([r[2] for r in v]))) for k, v in slopes.items()}

    def _fit_bottoms(self, X: np.ndarray, y: np.ndarray, group_keys: list[tuple[float, ...]],
                     group_of: np.ndarray) -> dict[tuple[float, ...], float]:
        """Family key -> the mean over its configurations of the log-log slope of the (median) latency between each
        one's two smallest profiled batches, clipped to [0, 1]: 1 where latency is proportional to the batch at the
        bottom of the grid (no launch floor in sight, as on CPUs), near 0 on a floor (GPUs)."""
        slopes: dict[tuple[float, ...], list[float]] = {}
        for g, key in enumerate(group_keys):
            rows = group_of == g
            batch, lat = X[rows, self.batch_index_], y[rows]
            two = np.unique(batch)[:2]
            if two.size < 2 or two[0] <= 0:
                continue
            low, next_ = (float(np.median(lat[batch == v])) for v in two)
            fam_key = self._family_of(key)
            slopes.setdefault(fam_key, []).append(float(np.log(next_ / low) / np.log(two[1] / two[0])))
        return {k: float(np.clip(np.mean(v), 0.0, 1.0)) for k, v in slopes.items()}

    def _choose_in_grid(self, X: np.ndarray, raw: np.ndarray, y: np.ndarray, work: np.ndarray) -> None:
        """Each profiled configuration's in-grid curve (:func:`~servopt.performance._ingrid.choose_in_grids`),
        from the training rows only: measured latencies ``raw``, fitted targets ``y``, works ``work``."""
        fam_keys, fam_of = group_index(X, self.family_index_)
        keys, group_of = group_index(X, self.group_index_)
        batch = X[:, self.batch_index_]

        def refit(ws: list[np.ndarray], lats: list[np.ndarray], starts: list[Roofline]) -> list[Roofline]:
            return fit_rooflines(ws, lats, robust_scale=self.robust_scale, min_free_points=self.min_free_points,
                                 start=starts)

        configs = []
        for g, key in enumerate(keys):
            rows = np.flatnonzero(group_of == g)
            fam = int(fam_of[rows[0]])
            fam_rows = np.flatnonzero(fam_of == fam)
            fam_key = fam_keys[fam]
            shift = float(self._size_shift(fam_key, X[rows[:1]])[0])
            mine = np.zeros(len(fam_rows), dtype=bool)
            mine[np.searchsorted(fam_rows, rows)] = True
            configs.append(Config(batch[rows], work[rows], raw[rows], y[rows], work[fam_rows], y[fam_rows], mine,
                                  self.families_[fam_key], shift, self.curves_[key]))
        chosen = choose_in_grids(self.in_grid, configs, envelope=self.monotone_envelope, refit_roof=refit,
                                 robust_scale=self.robust_scale, min_free_points=self.min_free_points)
        self.in_grid_: dict[tuple[float, ...], InGrid] = dict(zip(keys, chosen))

    def in_grid_choices(self) -> dict[tuple[float, ...], str]:
        """Configuration key -> the in-grid candidate it uses (see ``in_grid``)."""
        return {key: g.kind for key, g in self.in_grid_.items()}

    def _carry_slopes(self) -> None:
        """Give families whose slope is not identified the slope of the same family on another GPU."""
        names = self._feature_names()
        hw = names.index("hardware") if "hardware" in names else None
        hw_pos = self.family_index_.index(hw) if hw is not None and hw in self.family_index_ else None
        if hw_pos is None:
            return
        codes = getattr(self, "categories_", {}).get("hardware", [])

        def spec(key: tuple[float, ...]) -> Any:
            code = int(key[hw_pos])
            return hardware_spec(codes[code]) if 0 <= code < len(codes) else None

        for key, roof in list(self.families_.items()):
            mine = spec(key)
            if roof.identified or mine is None:
                continue
            slopes = []
            for other, o_roof in self.families_.items():
                theirs = spec(other)
                same = all(a == b for i, (a, b) in enumerate(zip(key, other)) if i != hw_pos)
                if other != key and same and theirs is not None and o_roof.identified:
                    slopes.append(o_roof.slope * theirs.fp16_tflops / mine.fp16_tflops)
            if slopes:
                self.families_[key] = Roofline(roof.floor, roof.intercept, roof.slope, roof.sharpness, roof.w_max,
                                               float(np.median(slopes)))

    def predict(self, X: Any) -> np.ndarray:
        """Latency of one batch for each row (see the class docstring for which curve serves which row)."""
        return self._predict_routed(X)[0]

    def routes(self, X: Any) -> np.ndarray:
        """Which curve :meth:`predict` uses for each row: a key of :data:`ROUTES` (``"configuration"``,
        ``"family"``, ``"other_gpu"`` or ``"fallback"``).

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[b, s] for s in (224.0, 320.0) for b in (1, 2, 4, 8, 16.0)])
        >>> model = WorkLatencyModel(size_feature=1).fit(X, 0.01 * X[:, 0] * X[:, 1] ** 2 / 224 ** 2 + 1.0)
        >>> model.routes(np.array([[8.0, 224.0], [8.0, 288.0]])).tolist()
        ['configuration', 'family']
        """
        return self._predict_routed(X)[1]

    def _predict_routed(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        raw_hw = None
        if hasattr(X, "columns") and "hardware" in getattr(self, "categories_", {}) and "hardware" in X.columns:
            raw_hw = [str(v) for v in X["hardware"]]
        X = self._check_predict(X)
        out = np.empty(len(X))
        route = np.full(len(X), "fallback", dtype=object)
        work = self._work(X)
        batch = X[:, self.batch_index_]
        keys, inverse = group_index(X, self.group_index_)
        fallback = np.zeros(len(X), dtype=bool)
        for g, key in enumerate(keys):
            rows = inverse == g
            fam_key = self._family_of(key)
            roof = self.families_.get(fam_key)
            if key in self.curves_:
                out[rows] = self._configuration(key, fam_key, roof, X[rows], batch[rows], work[rows])
                route[rows] = "configuration"
            elif roof is not None:
                value = self._unprofiled_size(fam_key, roof, X[rows], work[rows])
                out[rows] = self._between_sizes(key, X[rows], value)
                route[rows] = "family"
            else:
                fallback |= rows
        if fallback.any() and raw_hw is not None:
            for i in np.flatnonzero(fallback):
                value = self._other_gpu(X[i], raw_hw[i], work[i])
                if value is not None:
                    out[i] = value
                    route[i] = "other_gpu"
                    fallback[i] = False
        if fallback.any():
            out[fallback] = monotone_in_batch(self.estimator_, X[fallback], self.batch_index_, self.batch_knots_)
        return out, route

    def _configuration(self, key: tuple[float, ...], fam_key: tuple[float, ...], roof: Roofline | None,
                       X: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Latency of rows ``X`` (batches ``b``, works ``w``) of the profiled configuration ``key``: its in-grid
        curve, grown beyond its largest batch and bounded below its smallest (:meth:`_predict_routed`)."""
        curve = self.curves_[key]
        in_grid = getattr(self, "in_grid_", {}).get(key)
        own = in_grid if in_grid is not None else (lambda bb, ww: curve(bb))
        value = own(b, w)
        top = self.batch_max_[key]
        above = b > top
        if above.any():
            w_top = w[above] * top / b[above]
            # grow from the measurement at the largest profiled batch where the curve passes below it:
            # a smooth curve lags a tail whose time per sample still grows (CPUs: benchmarks/fresh_cpu.py)
            # (a model saved before this has no top_latency_: the curve alone, as it was fitted)
            anchor = getattr(self, "top_latency_", {}).get(key, 0.0)
            l_top = np.maximum(own(np.full(int(above.sum()), top), w_top), anchor)
            if roof is not None:
                # the growth of the family curve (fitted over every input size's works, with its
                # intercept, which may be negative: per-sample time that still grows with the batch,
                # as on CPUs whose caches a large batch overflows); latency never falls
                growth = roof(w[above]) / roof(w_top)
                # where the latency outgrows the family curve at the top of the grid (CPUs whose caches a
                # larger batch overflows: the curve, fitted over every size, lags one size's rise), it goes
                # on doing so as it did, for as many octaves as it was measured over (a models file saved
                # before this has no family_trend_: as fitted)
                e, reach = getattr(self, "family_trend_", {}).get(fam_key, (0.0, 0.0))
                if e > 0:
                    growth = growth * np.minimum(b[above] / top, 2.0 ** reach) ** e
                value[above] = np.maximum(l_top * growth, l_top)
            else:
                # the configuration's own curve: monotone, at most linear in batch
                value[above] = np.clip(value[above], l_top, l_top * b[above] / top)
        if roof is not None and hasattr(self, "batch_min_"):  # (a model saved before: as fitted)
            value = self._below_grid(X, key, fam_key, roof, own, b, w, value)
        return value

    def _between_sizes(self, key: tuple[float, ...], X: np.ndarray, value: np.ndarray) -> np.ndarray:
        """``value``, the latency of rows ``X`` at an input size their family did not profile (configuration
        ``key``), bounded by the latencies of the nearest profiled sizes of the same configuration at the same
        batches: at most the larger size's, at least the smaller size's (which wins where the two disagree: the
        upper one). Latency grows with the input size; before, a profiled size's in-grid curve and the
        unprofiled sizes' interpolation between measured works jumped at each profiled size (fresh set 21's
        ResNet-like at batch 64: 138.2 ms at 168 px, 145.0 at 172, 138.8 at a profiled 176)."""
        if self.size_index_ is None or self.size_index_ not in self.group_index_:
            return value
        position = self.group_index_.index(self.size_index_)
        smaller, larger = neighbour_sizes(self.curves_, key, position)
        for other, bound in ((larger, np.minimum), (smaller, np.maximum)):
            if other is None:
                continue
            rows = X.copy()
            rows[:, self.size_index_] = other[position]
            if self.work_index_ is not None:  # the profiled size's per-sample work (its polynomial)
                rows[:, self.work_index_] = 0.0
            fam_key = self._family_of(other)
            there = self._configuration(other, fam_key, self.families_.get(fam_key), rows,
                                        rows[:, self.batch_index_], self._work(rows))
            value = bound(value, there)
        return value

    def _unprofiled_size(self, fam_key: tuple[float, ...], roof: Roofline, X: np.ndarray,
                         work: np.ndarray) -> np.ndarray:
        """Latency at input sizes the family did not profile: each profiled size's latency at the row's work
        (:func:`_at_work`), interpolated linearly in input size between the neighbouring profiled sizes, in logs
        (a models file saved before ``size_curves_``: the family curve times the size correction)."""
        curves = getattr(self, "size_curves_", {}).get(fam_key)
        if curves is None or not curves[0].size or self.size_index_ is None:
            return roof(work) * np.exp(self._size_shift(fam_key, X))
        sizes, per_size = curves
        bottom = getattr(self, "family_bottom_", {}).get(fam_key, 0.0)
        at = np.array([_at_work(roof, lw, ly, work, bottom) for lw, ly in per_size])  # (sizes, rows), log
        if sizes.size == 1:
            return np.exp(at[0])
        size = X[:, self.size_index_]
        hi = np.clip(np.searchsorted(sizes, size), 1, sizes.size - 1)
        lo = hi - 1
        t = np.clip((size - sizes[lo]) / (sizes[hi] - sizes[lo]), 0.0, 1.0)
        cols = np.arange(len(size))
        return np.exp((1.0 - t) * at[lo, cols] + t * at[hi, cols])

    def _size_shift(self, fam_key: tuple[float, ...], X: np.ndarray) -> np.ndarray:
        """The family's size correction (log) at each row's input size: the mean log residual of the profiled
        sizes, interpolated linearly in input size and held constant beyond the ends (0 without sizes)."""
        sizes, corr = self.corrections_[fam_key]
        size = X[:, self.size_index_] if self.size_index_ is not None else np.zeros(len(X))
        return np.interp(size, sizes, corr) if sizes.size else np.zeros(len(X))

    def _below_grid(self, X: np.ndarray, key: tuple[float, ...], fam_key: tuple[float, ...], roof: Roofline,
                    own: Any, b: np.ndarray, w: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Batches below the configuration's smallest profiled batch ``low``: where the family's profiled works
        reach down to the row's work (other input sizes profiled at larger batches), the family curve with the
        configuration's size correction, between the in-grid value ``L_low`` at ``low`` (latency does not fall as
        the batch grows) and ``L_low * b / low`` (nor does throughput: without that bound a family curve whose work
        grows slower than the cost across sizes, pixels for attention, shrinks faster than linearly); below the
        family's works, the in-grid value capped at the same bound taken where the family's works end and, where
        the family shows no floor at the bottom of its grid (``family_bottom_`` at least ``LINEAR_BOTTOM``), at
        ``L_low * (b / low) ** family_bottom_`` (an in-grid curve chosen for its fit inside may still flatten
        below it: fresh CPU sets 3 and 5, batch 1 left out, +39 and +40 %)."""
        low = self.batch_min_[key]
        below = b < low
        if not below.any():
            return value
        scale = np.exp(self._size_shift(fam_key, X[below]))
        ww = w[below]
        one = X[below].copy()
        one[:, self.batch_index_] = 1.0
        per_sample = self._work(one)  # the work of one sample (also for a row at batch 0)
        at_low = own(np.full(ww.shape, low), per_sample * low)
        w_min = self.family_work_min_[fam_key]
        covered = ww >= w_min
        w_used = np.where(covered, ww, w_min)
        share = np.divide(w_used, per_sample * low, out=np.ones_like(w_used), where=per_sample > 0)
        family = np.clip(roof(w_used) * scale, at_low * np.minimum(share, 1.0), at_low)
        out = value.copy()
        uncovered = np.minimum(value[below], family)
        # no floor at the bottom of the family's grid: latency goes on shrinking with the batch as it did there
        # (a models file saved before this has no family_bottom_: as fitted)
        bottom = getattr(self, "family_bottom_", {}).get(fam_key, 0.0)
        if bottom >= LINEAR_BOTTOM:
            uncovered = np.minimum(uncovered, at_low * (b[below] / low) ** bottom)
        out[below] = np.where(covered, family, uncovered)
        return out

    def _other_gpu(self, row: np.ndarray, hardware: str, work: float) -> float | None:
        """An unprofiled GPU of the datasheet table: the geometric mean over the profiled GPUs of the same family
        of their floor-plus-roofline, the slope scaled by the ratio of FP16 peaks (the floor kept)."""
        mine = hardware_spec(hardware)
        names = self._feature_names()
        if mine is None or "hardware" not in names:
            return None
        hw = names.index("hardware")
        if hw not in self.family_index_:
            return None
        pos = self.family_index_.index(hw)
        key = [float(row[c]) for c in self.family_index_]
        codes = self.categories_["hardware"]
        logs = []
        for other, roof in self.families_.items():
            code = int(other[pos])
            theirs = hardware_spec(codes[code]) if 0 <= code < len(codes) else None
            if theirs is None or any(a != b for i, (a, b) in enumerate(zip(key, other)) if i != pos):
                continue
            ratio = theirs.fp16_tflops / mine.fp16_tflops
            scaled = Roofline(roof.floor, roof.intercept, roof.slope * ratio, roof.sharpness, roof.w_max * ratio,
                              None if roof.carried_slope is None else roof.carried_slope * ratio)
            logs.append(float(np.log(scaled(np.array([work]))[0])))
        return float(np.exp(np.mean(logs))) if logs else None
