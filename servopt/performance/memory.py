"""Device memory as a function of batch and input size, and the largest batch that fits.

Two structures (``MaxBatchModel(structure=...)``):

* ``"family"`` (what ``servopt fit`` uses): a least-squares line in batch per profiled configuration and, for
  input sizes a family (every feature but the batch and input size) was not profiled at, memory = static
  (weights, context, workspaces) + slope x batch x the per-sample work, one least-squares line pooled over the
  family's input sizes. The per-sample work is the graph's FLOPs of one sample (``gflops``, which ``servopt
  profile`` records; at an unprofiled size the family's polynomial in the input size,
  :mod:`~servopt.performance.work_poly`): activations grow with the pixels, and an attention's scores with the
  tokens squared, as its FLOPs do. Without ``gflops`` it is ``input_size²`` (what each cost on the fresh ViT-like
  graphs: docs/profiler.md, *Max batch*). Fitted on
  what the runtime *reserves* when the profile measures it (``memory_mb`` of the torch runtime is the caching
  allocator's reserved peak, ``hw.torch/reserved_peak_mb``).
* ``"line"`` (the model before issue 19): the per-configuration lines only; other configurations go to a
  regressor.

:meth:`MaxBatchModel.calibrate` then learns, from measured out-of-memory boundaries, the fraction of a memory
limit that the predicted memory may reach, so that the predicted largest batch is at most the measured one: a
profiled configuration's own boundary gives it back exactly, and an unprofiled input size uses the family line's
ratio at each boundary with that boundary's size left out of the fit, lowered beyond the profiled sizes by the
error per octave that leaving out the edge sizes showed; ``oom_margin_`` = 1 - the smallest fraction is the margin
reported by ``servopt fit``, and :meth:`MaxBatchModel.largest_batch` (``servopt predict --memory-limit-mb``) gives
each query's largest batch with the margin it used.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.utils.validation import check_is_fitted

from servopt.exceptions import ValidationError
from servopt.performance._base import ProfileRegressor, group_index, neighbour_sizes, predict_by_group
from servopt.performance._curves import Line, calm_line, fit_line, rising_line
from servopt.performance.features import MEMORY_WORK_FEATURE, WORK_FEATURE
from servopt.performance.memory_work import MEMORY_AXES, WORK_AXES, family_work, fit_axes, with_memory_work
from servopt.performance.work_poly import WorkColumnMixin, poly_key_columns

from servopt.performance.oom import (PRESSURE_ROWS, boundaries_from_profile, check_limit, describe_margin,
                                    pressure_rows_for, profile_oom_limits)

__all__ = ["FRACTION_BASES", "MEMORY_STRUCTURES", "PRESSURE_ROWS", "MaxBatchModel", "boundaries_from_profile",
           "describe_margin", "pressure_rows_for", "profile_oom_limits"]

#: the structures ``MaxBatchModel(structure=...)`` and ``fit_profile(memory_model=...)`` choose from
MEMORY_STRUCTURES = ("family", "line")
#: where :meth:`MaxBatchModel.largest_batch` took a row's usable fraction from
FRACTION_BASES = ("own boundary", "own boundary under a lower limit", "profiled size", "unprofiled size",
                  "beyond the profiled sizes", "a larger profiled size's largest batch",
                  "a smaller profiled size's largest batch", "other families' boundaries", "uncalibrated")
#: the bases of an input size the family was not profiled at, which the profiled sizes around it bound
_UNPROFILED_BASES = ("unprofiled size", "beyond the profiled sizes")
#: rows measured above this fraction of the limit of an out-of-memory search are left out of the configurations'
#: lines (with ``pressure_rows="drop"``)
PRESSURE_FRACTION = 0.5


class MaxBatchModel(WorkColumnMixin, ProfileRegressor):
    """Peak device memory (``memory_mb``) from the batch size, the input size and context.

    Memory grows linearly in the batch: weights and workspace, plus activations per item. With
    ``structure="line"`` rows that share every feature except the batch size (and ``hw.*`` features) form a group
    with its own least-squares line in batch size. With ``structure="family"`` rows that share every feature
    except the batch and input size (and ``gflops``) also form a family with one least-squares line in ``batch x
    gflops`` (the per-sample FLOPs, a feature named ``gflops``; else ``batch x input_size**2``): ``static + slope
    x batch x work``, which predicts input sizes the family was not profiled at. Families
    never seen in ``fit`` (groups, for ``"line"``) are predicted by ``estimator``, a regressor on the features plus
    ``batch * input_size**2``; by default a least-squares linear model, which extrapolates linearly in the
    batch, as memory does.

    Near a memory limit that PyTorch's caching allocator enforces, it frees its cached blocks and retries before
    it reports out of memory, so what a batch *reserves* there is less than what the same batch reserves
    unconstrained. With ``oom_limit_mb`` given (the limit the profile's out-of-memory search ran under) and
    ``pressure_rows="drop"``, rows above half of it are left out of the lines of the configurations (where two
    distinct batches remain); with ``"keep"`` (a limit only observed, as the ONNX Runtime profilers do: the run is
    stopped when its peak passes the limit, and nothing frees memory because of it) every row stays.
    :meth:`calibrate` takes ``oom_limit_mb`` as default. The family lines take every row: the calibration
    measures their error near the limit (leaving out half the limit's rows there made the held-out H200 sizes'
    uncalibrated batch too large in 5 of 12 cases, with every row in none). A line that would fall with the batch
    is replaced by the mean of its rows; with ``structure="family"`` a configuration whose line does not rise
    (that mean, or one batch size) is predicted by its family's line, which knows how memory grows (its own line
    would let every batch fit, and after :meth:`calibrate` its ratio would pull the family's fraction below 0).
    ``largest_batch`` refuses an input size that is not > 0.

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
    structure : {"line", "family"}, default "line"
        See above.
    oom_limit_mb : float, optional
        The memory limit of the profile's out-of-memory search (see above).
    pressure_rows : {"drop", "keep"}, default "drop"
        Whether rows above half of ``oom_limit_mb`` leave the configurations' lines (see above).
        ``servopt fit`` chooses from the profile (:func:`~servopt.performance.oom.pressure_rows_for`): ``"drop"``
        where ``memory_mb`` is the caching allocator's reserved peak (the column ``hw.torch/reserved_peak_mb``),
        else ``"keep"``.
    work_axis : {"flops", "act_peak"}, default "flops"
        The per-sample work of the family lines: ``"flops"`` the ``gflops`` feature; ``"act_peak"`` the
        ``act_peak_mb`` feature (the peak of live activations of one sample, which the ONNX profilers record for
        graphs without attention) where a family has it, else ``gflops``
        (:mod:`~servopt.performance.memory_work`). ``servopt fit`` uses ``"flops"``: on the held-out fresh set 22
        ``"act_peak"`` put 3 of 35 largest batches above the measured one (docs/performance-models.md).

    Attributes
    ----------
    lines_ : dict
        Group key -> :class:`~servopt.performance._curves.Line` (memory vs batch size).
    family_lines_ : dict
        Family key -> :class:`~servopt.performance._curves.Line` (memory vs batch x input size²; empty for
        ``structure="line"``).
    estimator_ : regressor
        The fitted regressor for unseen groups.
    margin_ : float
        Factor >= 1 applied to predictions in :meth:`max_batch` (see ``upper_quantile``).
    usable_fraction_ : dict
        Family key -> the fraction of a memory limit the predicted memory may reach in :meth:`max_batch` at its
        profiled configurations (set by :meth:`calibrate`; empty before: every family may use the whole limit).
    config_fraction_ : dict
        Configuration key -> {limit: its own fraction}, for configurations with a boundary (:meth:`calibrate`).
    config_boundary_ : dict
        Configuration key -> {limit: its smallest measured largest batch there}, the same configurations: under
        a larger limit the answer is at least that batch (:meth:`calibrate`).
    unprofiled_fraction_ : dict
        Family key -> the fraction at input sizes the family was not profiled at (:meth:`calibrate`).
    shortfall_per_octave_ : dict
        Family key -> ``{"up": rate, "down": rate}``: beyond the family's profiled sizes (above or below) the
        fraction is at most ``reference_fraction_ - rate x octaves beyond`` (:meth:`calibrate`).
    reference_fraction_ : dict
        Family key -> the median ratio of its boundaries, at most 1: what the rates are measured from.
    default_fraction_ : float
        The fraction for families :meth:`calibrate` saw no boundary of: min(1, every calibrated fraction).
    oom_margin_ : float or None
        After :meth:`calibrate`, 1 - the smallest family fraction (profiled or unprofiled sizes): the largest
        share of a limit held back for any family (negative when every family's model over-predicts memory near
        the limit, so the calibration lets the prediction exceed it), else None. Per family: :meth:`margins`.
    calibration_ : list of dict
        One record per boundary used by :meth:`calibrate`: family, input size, limit, measured largest batch,
        ``ratio`` (predicted memory at that batch / limit), ``unprofiled_ratio`` (the same with the size left out
        of the family line), ``left_out_beyond`` / ``left_out_octaves`` (whether that size lay above or below the
        family's other sizes, and by how many octaves) and the family's fractions and rates.

    Examples
    --------
    >>> import numpy as np
    >>> b = np.array([1, 2, 4, 8, 16, 32.0]); s = np.full(6, 224.0)
    >>> model = MaxBatchModel().fit(np.c_[b, s], 500 + 20 * b)
    >>> model.max_batch(224, memory_limit_mb=1000)
    25
    """

    #: a model saved before 311283a / 450f24d: the FLOPs axis, the rows above half the limit left out
    _params_before: ClassVar[dict[str, Any]] = {"work_axis": "flops", "pressure_rows": "drop"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "work_axis" not in state and MEMORY_WORK_FEATURE in (state.get("axes_") or {}):
            state = {**state, "work_axis": "act_peak"}  # saved from 2886e1f to 311283a: its lines in act_peak_mb
        super().__setstate__(state)

    def __init__(self, estimator: Any = None, *, batch_feature: Any = None, size_feature: Any = None,
                 max_batch_size: int = 4096, upper_quantile: float | None = None, block_mb: float = 0.0,
                 structure: str = "line", oom_limit_mb: float | None = None, work_axis: str = "flops",
                 pressure_rows: str = "drop") -> None:
        self.estimator = estimator
        self.batch_feature = batch_feature
        self.size_feature = size_feature
        self.max_batch_size = max_batch_size
        self.upper_quantile = upper_quantile
        self.block_mb = block_mb
        self.structure = structure
        self.oom_limit_mb = oom_limit_mb
        self.work_axis = work_axis
        self.pressure_rows = pressure_rows

    def _design(self, X: np.ndarray) -> np.ndarray:
        if self.size_index_ is None:
            return X
        return np.c_[X, X[:, self.batch_index_] * X[:, self.size_index_] ** 2]

    def _with_work(self, X: Any, names: list[str]) -> Any:
        """``X`` with both work columns (``gflops``, ``act_peak_mb``) completed where ``names`` include them."""
        return with_memory_work(X, names)

    def _work(self, X: np.ndarray) -> np.ndarray:
        """The x of the family lines: ``batch x`` the per-sample work (``act_peak_mb``, else ``gflops``, else
        ``input_size**2``: :mod:`~servopt.performance.memory_work`)."""
        axes = getattr(self, "axes_", None)
        if axes is None:  # a model fitted before act_peak_mb: its FLOPs only
            axes = {} if getattr(self, "work_index_", None) is None else {
                WORK_FEATURE: (self.work_index_, self.work_polys_)}
        return family_work(X, axes, poly_key_columns(self.family_index_, self._feature_names()), self.batch_index_,
                           self.size_index_)

    def fit(self, X: Any, y: Any) -> MaxBatchModel:
        """Fit memory against the features (and batch x input size squared)."""
        if self.structure not in MEMORY_STRUCTURES:
            raise ValidationError(f"MaxBatchModel: structure={self.structure!r}: expected one of "
                                  f"{', '.join(MEMORY_STRUCTURES)}")
        if self.work_axis not in WORK_AXES:
            raise ValidationError(f"MaxBatchModel: work_axis={self.work_axis!r}: expected one of "
                                  f"{', '.join(WORK_AXES)}")
        if self.oom_limit_mb is not None and not float(self.oom_limit_mb) > 0:
            raise ValidationError(f"MaxBatchModel: oom_limit_mb={self.oom_limit_mb!r}: expected a number > 0")
        if self.pressure_rows not in PRESSURE_ROWS:
            raise ValidationError(f"MaxBatchModel: pressure_rows={self.pressure_rows!r}: expected one of "
                                  f"{', '.join(PRESSURE_ROWS)}")
        X = self._with_work(X, [str(c) for c in getattr(X, "columns", [])])
        X, y = self._validate(X, y, reset=True)
        self.batch_index_ = self._column(self.batch_feature, "batch_size", 0, "batch_feature")
        if self.batch_index_ is None:
            raise ValidationError("MaxBatchModel: no 'batch_size' feature; name it with batch_feature=")
        self.size_index_ = self._column(self.size_feature, "input_size", 1, "size_feature")
        if self.size_index_ == self.batch_index_:
            self.size_index_ = None
        # the per-sample FLOPs and peak of live activations (gflops, act_peak_mb, by name only): functions of the
        # input size, so not part of a key
        work_columns = {self._column(None, name, None, "work") for name in MEMORY_AXES}
        names = self._feature_names()
        self.group_index_ = [i for i, name in enumerate(names)
                             if i != self.batch_index_ and i not in work_columns and not name.startswith("hw.")]
        self.family_index_ = [i for i in self.group_index_ if i != self.size_index_]
        self.axes_ = fit_axes(X, names, poly_key_columns(self.family_index_, names), self.size_index_,
                              MEMORY_AXES if self.work_axis == "act_peak" else (WORK_FEATURE,))
        self.work_index_ = self.axes_[WORK_FEATURE][0] if WORK_FEATURE in self.axes_ else None
        self.peak_index_ = self.axes_[MEMORY_WORK_FEATURE][0] if MEMORY_WORK_FEATURE in self.axes_ else None
        batch = X[:, self.batch_index_]
        keys, inverse = group_index(X, self.group_index_)
        calm = np.ones(len(y), dtype=bool) if self.oom_limit_mb is None or self.pressure_rows == "keep" else \
            y <= PRESSURE_FRACTION * float(self.oom_limit_mb)
        self.lines_: dict[tuple[float, ...], Line] = {
            key: calm_line(batch, y, inverse == g, calm) for g, key in enumerate(keys)}
        self.family_lines_: dict[tuple[float, ...], Line] = {}
        self.family_rows_: dict[tuple[float, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if self.structure == "family":
            work = self._work(X)
            sizes = X[:, self.size_index_] if self.size_index_ is not None else np.zeros(len(X))
            fam_keys, fam = group_index(X, self.family_index_)
            for g, key in enumerate(fam_keys):
                rows = fam == g
                self.family_lines_[key] = rising_line(work[rows], y[rows])
                self.family_rows_[key] = (work[rows], y[rows], sizes[rows])
        self.estimator_ = clone(self.estimator if self.estimator is not None else LinearRegression())
        self.estimator_.fit(self._design(X), y)
        self.margin_ = self._margin(batch, y, inverse)
        self.usable_fraction_: dict[tuple[float, ...], float] = {}
        self.unprofiled_fraction_: dict[tuple[float, ...], float] = {}
        self.shortfall_per_octave_: dict[tuple[float, ...], dict[str, float]] = {}
        self.config_fraction_: dict[tuple[float, ...], dict[float, float]] = {}
        self.default_fraction_ = 1.0
        self.oom_margin_: float | None = None
        self.calibration_: list[dict[str, Any]] = []
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
        """Predicted peak memory of each row (MiB in profiles); non-decreasing in the input size (see
        :meth:`_between_sizes`)."""
        X = self._check_predict(X)
        return self._predict(X, upper=True)

    def _predict(self, X: np.ndarray, upper: bool = False) -> np.ndarray:
        """The memory of each row; ``upper``: also at most a larger profiled size's (:meth:`_between_sizes`), for
        :meth:`predict` only: what plans count (:meth:`_need`) is never lowered by it."""
        if self.structure != "family":
            return predict_by_group(X, self.group_index_, self.batch_index_, self.lines_, self._regressor_predict)
        # a configuration whose line does not rise with the batch (one batch size profiled, or noise that would
        # make it fall: the mean) says nothing of how its memory grows; its family's line does
        rising = {key: line for key, line in self.lines_.items() if line.slope > 0}
        out = predict_by_group(X, self.group_index_, self.batch_index_, rising, self._family_predict)
        return self._between_sizes(X, out, rising, upper)

    def _between_sizes(self, X: np.ndarray, out: np.ndarray, rising: dict[tuple[float, ...], Line],
                       upper: bool) -> np.ndarray:
        """``out`` with each row of an input size its configuration did not profile bounded by the memory of the
        nearest profiled sizes of that configuration at the same batch: at least the smaller size's and, with
        ``upper``, at most the larger size's (the smaller's bound wins where they disagree). The family line and
        a profiled size's own line differ in their static part, so the prediction jumped at each profiled size
        (fresh set 21's MobileNet-like at batch 1: 32.7 MB at 104 px, 22.7 MB at a profiled 108 px). The upper
        bound only lowers memory, so plans never take it: with it, one held-out largest batch of
        ``max_batch_check`` (the pressure-rows-dropped variant, fresh set 24 without the pattern) went above the
        truth, 28 for 21; the largest batch is monotone in the size by its own bounds (:meth:`_size_bounds`)."""
        if self.size_index_ is None or self.size_index_ not in self.group_index_:
            return out
        position = self.group_index_.index(self.size_index_)
        keys, inverse = group_index(X, self.group_index_)
        for g, key in enumerate(keys):
            if key in self.lines_:
                continue
            rows = np.flatnonzero(inverse == g)
            smaller, larger = neighbour_sizes(self.lines_, key, position)
            for other, bound in ((larger if upper else None, np.minimum), (smaller, np.maximum)):
                if other is None:
                    continue
                there = self._at_size(X[rows], other[position])
                line = rising.get(other)
                value = line(there[:, self.batch_index_]) if line is not None else self._family_predict(there)
                out[rows] = bound(out[rows], value)
        return out

    def _at_size(self, rows: np.ndarray, size: float) -> np.ndarray:
        """A copy of ``rows`` at input size ``size``, their per-sample work left to the family's polynomial in the
        input size (0: unknown)."""
        at = rows.copy()
        at[:, self.size_index_] = size
        for name in MEMORY_AXES:
            index = self._column(None, name, None, "work")
            if index is not None:
                at[:, index] = 0.0
        return at

    def _need_at(self, row: np.ndarray, batch: float) -> float:
        """What :meth:`max_batch` compares with the usable limit for ``row`` (one row) at ``batch``."""
        at = row.copy()
        at[0, self.batch_index_] = batch
        return float(self._need(at)[0])

    def _regressor_predict(self, rows: np.ndarray) -> np.ndarray:
        return self.estimator_.predict(self._design(rows))

    def _family_predict(self, rows: np.ndarray) -> np.ndarray:
        """The family's line in batch x work, else the regressor."""
        return predict_by_group(np.c_[rows, self._work(rows)], self.family_index_, rows.shape[1], self.family_lines_,
                                lambda r: self._regressor_predict(r[:, :-1]))

    def _need(self, X: np.ndarray) -> np.ndarray:
        """Memory :meth:`max_batch` compares with the usable limit: prediction x margin, rounded up to blocks."""
        return self._rounded_need(self._predict(X))

    def _rounded_need(self, memory: np.ndarray) -> np.ndarray:
        need = memory * self.margin_
        if self.block_mb > 0:
            need = np.ceil(need / self.block_mb) * self.block_mb
        return need

    def _fractions(self, X: np.ndarray, limit: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The usable fraction of the limit for each row and what it comes from (:data:`FRACTION_BASES`): its
        configuration's own where a boundary of it was calibrated under ``limit`` (``"own boundary"``), its
        family's at a profiled configuration (``"profiled size"``), its family's for unprofiled sizes elsewhere
        (``"unprofiled size"``, or ``"beyond the profiled sizes"`` where the shortfall per octave lowered it);
        for a family without a boundary ``default_fraction_`` (``"other families' boundaries"``, or
        ``"uncalibrated"`` before :meth:`calibrate`: the whole limit). Under a limit above one of a
        configuration's own boundaries, at least what that boundary needs (``"own boundary under a lower
        limit"``); at an unprofiled size, the answers at the family's profiled sizes around it bound its own
        (:meth:`_size_bounds`)."""
        default = self.default_fraction_
        own = getattr(self, "config_fraction_", {})
        unprofiled = getattr(self, "unprofiled_fraction_", {})  # (models saved before it: the usable fraction)
        keys, inverse = group_index(X, self.group_index_)
        out = np.empty(len(keys))
        basis = np.empty(len(keys), dtype=object)
        answers: dict[tuple[float, ...], int] = {}  # profiled configuration -> its largest batch (_size_bounds)
        for g, key in enumerate(keys):
            family = tuple(v for i, v in zip(self.group_index_, key) if i in self.family_index_)
            if limit is not None and float(limit) in own.get(key, {}):
                out[g], basis[g] = own[key][float(limit)], "own boundary"
            elif key in self.lines_ or self.structure != "family" or not unprofiled:
                out[g], basis[g] = self.usable_fraction_.get(family, default), "profiled size"
            else:
                fraction = unprofiled.get(family, default)
                out[g] = self._beyond(family, key, fraction)
                basis[g] = "beyond the profiled sizes" if out[g] < fraction else "unprofiled size"
            if family not in self.usable_fraction_:  # every calibrated family's smallest fraction, or 1
                basis[g] = "other families' boundaries" if self.usable_fraction_ else "uncalibrated"
            bounds = getattr(self, "config_boundary_", {}).get(key)  # (models saved before it: none)
            below = [b for lim, b in (bounds or {}).items() if limit is not None and lim < float(limit)]
            if below and float(limit) not in bounds:  # what ran under a smaller limit fits under this one
                floor = _share(self._need_at(X[np.flatnonzero(inverse == g)[:1]], max(below)), float(limit))
                if out[g] < floor:
                    out[g], basis[g] = floor, "own boundary under a lower limit"
            if basis[g] in _UNPROFILED_BASES and limit is not None:
                at = X[np.flatnonzero(inverse == g)[:1]]
                out[g], basis[g] = self._size_bounds(at, key, float(limit), float(out[g]), str(basis[g]),
                                                     answers)
        return out[inverse], basis[inverse]

    def _size_bounds(self, row: np.ndarray, key: tuple[float, ...], limit: float, fraction: float,
                     basis: str, answers: dict[tuple[float, ...], int]) -> tuple[float, str]:
        """The fraction of an unprofiled input size (``row``, its configuration ``key``) bounded by the answers at
        the nearest profiled sizes of its configuration (the same features but the input size) under the same
        limit: memory grows with the input size, so what fits at a larger size fits here (at least that batch;
        basis ``"a larger profiled size's largest batch"``), and the answer is at most the smaller size's (basis
        ``"a smaller profiled size's largest batch"``; it wins where the two disagree). Without these, 127 px got
        a smaller batch than a profiled 128 px (fresh set 25's ViT-like under 100 MiB: 52 against 55, its own
        boundary), and 101 px a larger one than a profiled 100 px under another limit (the MobileNet-like under
        200 MiB: 50 against 26). ``answers`` caches the profiled configurations' largest batches."""
        if self.size_index_ is None or self.structure != "family":
            return fraction, basis
        position = self.group_index_.index(self.size_index_)
        smaller, larger = neighbour_sizes(self.lines_, key, position)

        def answer(other: tuple[float, ...]) -> int:  # its largest batch under the limit
            if other not in answers:
                at = self._at_size(row, other[position])
                answers[other] = int(self._largest(at, self._fractions(at, limit)[0] * limit)[0])
            return answers[other]

        if larger is not None and answer(larger) > 0:  # the largest batch at the nearest larger size fits here
            floor = _share(self._need_at(row, answer(larger)), limit)
            if fraction < floor:
                fraction, basis = floor, "a larger profiled size's largest batch"
        if smaller is not None and answer(smaller) < self.max_batch_size:
            cap = _below(self._need_at(row, answer(smaller) + 1), limit)
            if fraction > cap:
                fraction, basis = cap, "a smaller profiled size's largest batch"
        return fraction, basis

    def _largest(self, rows: np.ndarray, usable: np.ndarray) -> np.ndarray:
        """For each row, the first batch whose need passes ``usable`` (MiB, per row), less one
        (``max_batch_size`` where none does)."""
        batches = np.arange(1, int(self.max_batch_size) + 1, dtype=float)
        out = np.empty(len(rows), dtype=int)
        for k in range(len(rows)):  # one grid per row: a row's grid has one configuration, so grouping is cheap
            grid = np.repeat(rows[k:k + 1], len(batches), axis=0)
            grid[:, self.batch_index_] = batches
            fits = self._need(grid) <= usable[k]
            out[k] = len(batches) if fits.all() else int(np.argmin(fits))  # the first batch that does not fit
        return out

    def _beyond(self, family: tuple[float, ...], key: tuple[float, ...], fraction: float) -> float:
        """``fraction`` at an unprofiled size, lowered beyond the family's profiled sizes by the shortfall per
        octave its edge sizes showed when left out (``shortfall_per_octave_``): ``min(fraction, reference -
        rate x octaves beyond)``; unchanged where that rate is 0 (the edge left out showed no shortfall)."""
        rates = getattr(self, "shortfall_per_octave_", {}).get(family)  # (models saved before it: none)
        if not rates or self.size_index_ is None or family not in self.family_rows_:
            return fraction
        direction, octaves = _octaves_outside(key[self.group_index_.index(self.size_index_)],
                                              self.family_rows_[family][2])
        if direction is None:
            return fraction
        rate = rates.get(direction, max(rates.values()))  # no edge left out that way: the other way's rate
        return fraction if rate <= 0 else min(fraction, self.reference_fraction_[family] - rate * octaves)

    def calibrate(self, X: Any, max_batch: Any, memory_limit_mb: Any = None) -> MaxBatchModel:
        """Learn the usable fraction of a memory limit from measured out-of-memory boundaries.

        For each boundary (a row of features, the largest batch that ran under ``memory_limit_mb``), the ratio
        of the predicted memory at that batch to the limit is the most the prediction may reach for that batch
        to fit. Three fractions follow:

        * a configuration with a boundary of its own (and a line that rises with the batch) uses, under the limit
          that boundary was measured at, the smallest ratio of its own boundaries there (``config_fraction_``): its
          largest batch under that limit is the measured one. Under a larger limit the answer of the rules below
          is raised to its largest boundary under a smaller one where it falls short (``config_boundary_``): what
          ran under a smaller limit fits, so the largest batch never falls as the limit grows. (Under a smaller
          limit than a boundary's no such cap is needed: the rules below are at most its ratio, so they stay
          below it.);
        * other profiled configurations, and any configuration under another limit, use their family's smallest
          ratio minus the spread of the ratios (``usable_fraction_``: how far the ratio moves between the
          family's configurations is held back once more; with the own fraction carried to 4096 MiB, resnet50
          fp16 at 224 px got 665 for a measured 664, with this 663);
        * an input size the family was not profiled at (``structure="family"``) uses the family's smallest
          ratio of the family line *fitted without the boundary's input size* (``unprofiled_fraction_``, the
          ``unprofiled_ratio`` of each record): the error a size the fit never saw has, measured the way it
          will be used (the measurements behind each rule: docs/profiler.md, *Max batch*);
        * beyond the family's profiled sizes that fraction is at most ``reference - rate x octaves beyond``
          (``shortfall_per_octave_``): ``reference`` is the median ratio of the family's boundaries (at most 1),
          ``rate`` the most that ratio exceeded the ``unprofiled_ratio`` of a boundary whose size lay beyond the
          family's other sizes that way, per octave it lay beyond them (how much a line's extrapolation falls
          short, per octave; 0 where it did not).

        Families without a boundary use min(1, every calibrated fraction). Calling it again replaces the
        previous calibration. :meth:`largest_batch` says, per query, which fraction it used.

        Parameters
        ----------
        X : array-like or DataFrame
            One row per boundary, with the features of :meth:`fit` (the batch size column is replaced by
            ``max_batch``).
        max_batch : array-like of int
            The largest batch that ran at each row (the out-of-memory batch minus one after a bisection).
        memory_limit_mb : float or array-like, optional
            The limit of each search; default ``oom_limit_mb``.

        Returns
        -------
        MaxBatchModel
            ``self``, with ``usable_fraction_``, ``unprofiled_fraction_``, ``shortfall_per_octave_``,
            ``default_fraction_``, ``oom_margin_`` and ``calibration_``.

        Raises
        ------
        ValidationError
            No limit, a limit or batch that is not positive, or lengths that differ.
        """
        check_is_fitted(self)
        limit = self.oom_limit_mb if memory_limit_mb is None else memory_limit_mb
        if limit is None:
            raise ValidationError("MaxBatchModel.calibrate: give memory_limit_mb= (or oom_limit_mb= to the model)")
        rows = self._check_predict(X).copy()
        batch = np.asarray(max_batch, dtype=float).reshape(-1)
        limits = np.broadcast_to(np.asarray(limit, dtype=float), batch.shape).copy()
        if len(batch) != len(rows):
            raise ValidationError(f"MaxBatchModel.calibrate: {len(rows)} rows but {len(batch)} max_batch values")
        if np.any(~np.isfinite(limits) | (limits <= 0)):
            raise ValidationError(f"MaxBatchModel.calibrate: memory_limit_mb={limit!r}: expected numbers > 0")
        if np.any(~np.isfinite(batch) | (batch < 0)):
            raise ValidationError(f"MaxBatchModel.calibrate: max_batch {batch.tolist()!r}: expected numbers >= 0")
        use = batch >= 1
        rows, batch, limits = rows[use], batch[use], limits[use]
        rows[:, self.batch_index_] = batch
        need = self._need(rows)
        ratio = need / limits
        unseen = self._held_out_need(rows) / limits
        configs, config_of = group_index(rows, self.group_index_)
        self.config_fraction_, self.config_boundary_ = {}, {}
        for g, key in enumerate(configs):
            line = self.lines_.get(key)
            if line is not None and line.slope > 0:  # a flat line would let every batch fit
                for lim in np.unique(limits[config_of == g]):
                    at = (config_of == g) & (limits == lim)
                    k = np.flatnonzero(at)[np.argmin(batch[at])]  # its smallest boundary there
                    self.config_fraction_.setdefault(key, {})[float(lim)] = _share(float(need[k]), float(lim))
                    self.config_boundary_.setdefault(key, {})[float(lim)] = int(batch[k])
        keys, inverse = group_index(rows, self.family_index_)
        self.usable_fraction_, self.unprofiled_fraction_, self.shortfall_per_octave_ = {}, {}, {}
        self.reference_fraction_ = {}
        edge: list[tuple[str | None, float]] = [(None, 0.0)] * len(rows)
        for g, key in enumerate(keys):
            r = ratio[inverse == g]
            self.usable_fraction_[key] = float(r.min() - (r.max() - r.min()))
            if self.structure == "family":
                self.unprofiled_fraction_[key] = float(unseen[inverse == g].min())
            if self.structure == "family" and self.size_index_ is not None and key in self.family_rows_:
                reference = self.reference_fraction_[key] = float(min(1.0, np.median(r)))
                profiled = self.family_rows_[key][2]
                for k in np.flatnonzero(inverse == g):
                    size = rows[k, self.size_index_]
                    edge[k] = _octaves_outside(size, profiled[profiled != size])
                    direction, octaves = edge[k]
                    if direction is not None and octaves > 0:
                        rates = self.shortfall_per_octave_.setdefault(key, {})
                        growth = max(0.0, reference - float(unseen[k]))
                        rates[direction] = max(rates.get(direction, 0.0), growth / octaves)
        fractions = [*self.usable_fraction_.values(), *self.unprofiled_fraction_.values()]
        self.default_fraction_ = float(min([1.0, *fractions]))
        self.oom_margin_ = 1.0 - min(fractions) if fractions else None
        names = self._feature_names()
        self.calibration_ = [
            {"family": {names[i]: self._decode(i, row[i]) for i in self.family_index_},
             "input_size": None if self.size_index_ is None else float(row[self.size_index_]),
             "memory_limit_mb": float(lim), "max_batch": int(b), "ratio": float(r),
             "unprofiled_ratio": float(u) if self.structure == "family" else None,
             "left_out_beyond": edge[k][0], "left_out_octaves": edge[k][1],
             "usable_fraction": self.usable_fraction_[keys[inverse[k]]],
             "unprofiled_fraction": self.unprofiled_fraction_.get(keys[inverse[k]]),
             "shortfall_per_octave": dict(self.shortfall_per_octave_.get(keys[inverse[k]], {}))}
            for k, (row, lim, b, r, u) in enumerate(zip(rows, limits, batch, ratio, unseen))]
        return self

    def _held_out_need(self, rows: np.ndarray) -> np.ndarray:
        """What the family line predicts (x margin, in blocks) at each row with the rows of the row's input size
        left out of the fit: the error an unprofiled size sees (the line of every row where the family has one
        size; the prediction itself without family lines)."""
        if self.structure != "family":
            return self._need(rows)
        keys, inverse = group_index(rows, self.family_index_)
        work = self._work(rows)
        sizes = rows[:, self.size_index_] if self.size_index_ is not None else np.zeros(len(rows))
        out = self._need(rows)
        for g, key in enumerate(keys):
            if key not in self.family_rows_:
                continue
            fam_work, fam_y, fam_sizes = self.family_rows_[key]
            for size in np.unique(sizes[inverse == g]):  # one fit per size left out
                at = (inverse == g) & (sizes == size)
                others = fam_sizes != size
                line = rising_line(fam_work[others], fam_y[others]) if others.any() else self.family_lines_[key]
                out[at] = self._rounded_need(line(work[at]))
        return out

    def _decode(self, index: int, value: float) -> Any:
        name = self._feature_names()[index]
        values = getattr(self, "categories_", {}).get(name)
        if values is not None:
            return values[int(value)] if 0 <= value < len(values) else None
        return float(value)

    def margins(self) -> list[dict[str, Any]]:
        """Per calibrated family, for reports: its features, the usable fraction at its profiled configurations
        (``usable_fraction``; a configuration with a boundary of its own uses its own), at input sizes it was not
        profiled at (``unprofiled_fraction``, None without family lines), the margin ``1 - min`` of both, the
        number of boundaries and of distinct input sizes they were measured at, and ``shortfall_per_octave``
        (``{"up": rate, "down": rate}``: beyond its profiled sizes the fraction is at most ``reference - rate x
        octaves``, so the margin there grows with the distance). A family calibrated at one input size cannot
        leave a size out (``input_sizes`` 1), so another size's largest batch may exceed the one that fits.
        ``unprofiled_spread``: the largest over the smallest ``unprofiled_ratio`` of its boundaries (None with fewer
        than two). On the fresh CPU sets seen while it was added, a spread above 1.11x went with an unprofiled
        size's largest batch falling 10 % or more short; on fresh set 25, measured after, it did not
        (docs/profiler.md, *Max batch*), so reports give the number without reading it."""
        check_is_fitted(self)
        seen: dict[str, dict[str, Any]] = {}
        sizes: dict[str, set] = {}
        unseen: dict[str, list[float]] = {}
        for rec in getattr(self, "calibration_", []):
            label = " ".join(str(v) for v in rec["family"].values() if v not in (None, "", 0.0))
            unprofiled = rec.get("unprofiled_fraction")
            least = min(f for f in (rec["usable_fraction"], unprofiled) if f is not None)
            seen.setdefault(label, {"family": label or "all", "usable_fraction": rec["usable_fraction"],
                                    "unprofiled_fraction": unprofiled, "oom_margin": 1.0 - least, "boundaries": 0,
                                    "shortfall_per_octave": dict(rec.get("shortfall_per_octave") or {})})
            seen[label]["boundaries"] += 1
            sizes.setdefault(label, set()).add(rec["input_size"])
            if rec.get("unprofiled_ratio") is not None:
                unseen.setdefault(label, []).append(float(rec["unprofiled_ratio"]))
        for label, rec in seen.items():
            rec["input_sizes"] = len(sizes[label])
            ratios = unseen.get(label, [])
            rec["unprofiled_spread"] = max(ratios) / min(ratios) if len(ratios) > 1 and min(ratios) > 0 else None
        return list(seen.values())

    def max_batch(self, input_size: float | None, memory_limit_mb: float, **features: Any) -> int:
        """The largest batch size predicted to fit in ``memory_limit_mb`` (0 if even batch 1 does not fit).

        Every batch from 1 up to the answer is predicted to fit (the first batch that does not fit ends the
        search): the predicted memory times ``margin_``, rounded up to ``block_mb``, at most the family's usable
        fraction of the limit (1 before :meth:`calibrate`). Other features of the model are given by name in
        ``features``.

        Raises
        ------
        ValidationError
            A feature the model needs is not given.
        """
        check_is_fitted(self)
        names = self._feature_names()
        row: dict[str, Any] = {}
        for i, name in enumerate(names):
            if i == self.batch_index_:
                continue
            if i == self.size_index_:
                if input_size is None:
                    raise ValidationError(f"max_batch: the model needs the input size (feature {name!r})")
                row[name] = input_size
            elif name in MEMORY_AXES and name not in features:
                row[name] = 0.0  # unknown: the family's polynomial in the input size
            elif name in features:
                row[name] = features[name]
            else:
                raise ValidationError(f"max_batch: give a value for feature {name!r} (needed: "
                                 f"{', '.join(n for j, n in enumerate(names) if j != self.batch_index_)})")
        if hasattr(self, "feature_names_in_"):
            import pandas as pd

            X = pd.DataFrame({name: [row[name] if i != self.batch_index_ else 1.0]
                              for i, name in enumerate(names)})
        else:
            X = np.array([[1.0 if i == self.batch_index_ else float(row[name]) for i, name in enumerate(names)]])
        return int(self.largest_batch(X, memory_limit_mb)["max_batch"][0])

    def _check_sizes(self, rows: np.ndarray, where: str) -> np.ndarray:
        """``rows``, refused where an input size is not a number > 0 (an empty cell, 0 or a negative size would
        otherwise get the largest batch of the smallest image)."""
        if self.size_index_ is not None:
            sizes = rows[:, self.size_index_]
            bad = ~(np.isfinite(sizes) & (sizes > 0))
            if bad.any():
                k = int(np.argmax(bad))
                raise ValidationError(f"{where}: row {k + 1}: input_size {sizes[k]:g}: expected a size > 0")
        return rows

    def largest_batch(self, X: Any, memory_limit_mb: float) -> dict[str, np.ndarray]:
        """For each row of ``X`` (the features of :meth:`fit`; its batch size is ignored), the largest batch
        predicted to fit in ``memory_limit_mb`` (:meth:`max_batch`) and the margin used.

        Returns
        -------
        dict of arrays
            ``max_batch`` (int, 0 if batch 1 does not fit; ``max_batch_size`` if every batch fits),
            ``usable_fraction`` (the share of the limit the predicted memory may reach), ``oom_margin``
            (``1 - usable_fraction``) and ``basis`` (where the fraction comes from, one of
            :data:`FRACTION_BASES`; see :meth:`calibrate`).
        """
        check_is_fitted(self)
        limit = check_limit(memory_limit_mb, "largest_batch")
        rows = self._check_sizes(self._check_predict(X), "largest_batch")
        fraction, basis = self._fractions(rows, limit)
        out = self._largest(rows, fraction * limit)
        return {"max_batch": out, "usable_fraction": fraction, "oom_margin": 1.0 - fraction,
                "basis": basis}

    def planned_memory(self, X: Any, memory_limit_mb: float) -> dict[str, np.ndarray]:
        """For each row of ``X`` (at its own batch size), the memory a plan under ``memory_limit_mb`` counts for
        it: the predicted memory (x ``margin_``, in blocks) divided by the usable fraction of that limit, so that
        a row fits on its own exactly when :meth:`largest_batch` says its batch fits (``planned <= limit``).

        A fraction above 1 (the model over-predicts memory near the limit: on the H200 the reserved-memory line
        says 5027 MiB at batch 664, which ran under 4096 MiB) makes the planned memory of a small batch less than
        the prediction; a plan that packs several instances should not count less than what was measured at a
        profiled batch (the fleet problem takes the larger of the two).

        Returns
        -------
        dict of arrays
            ``memory_mb`` (inf where the usable fraction is not > 0: nothing fits), ``usable_fraction``,
            ``oom_margin`` and ``basis`` (as :meth:`largest_batch`).
        """
        check_is_fitted(self)
        limit = check_limit(memory_limit_mb, "planned_memory")
        rows = self._check_sizes(self._check_predict(X), "planned_memory")
        fraction, basis = self._fractions(rows, limit)
        memory = np.full(len(rows), np.inf)
        np.divide(self._need(rows), fraction, out=memory, where=fraction > 0)
        return {"memory_mb": memory, "usable_fraction": fraction, "oom_margin": 1.0 - fraction, "basis": basis}


def _share(need: float, limit: float) -> float:
    """The smallest fraction of ``limit`` under which memory ``need`` fits: ``need / limit``, raised by the last bits
    floating point may lose, so that ``need <= fraction x limit`` (what :meth:`MaxBatchModel.largest_batch` tests)
    and ``need / fraction <= limit`` (what :meth:`MaxBatchModel.planned_memory` gives) both hold."""
    fraction = need / limit
    while fraction * limit < need or (fraction > 0 and need / fraction > limit):
        fraction = float(np.nextafter(fraction, np.inf))
    return fraction


def _below(need: float, limit: float) -> float:
    """The largest fraction of ``limit`` under which memory ``need`` does not fit: just below ``need / limit``, so
    that ``need > fraction x limit`` (:meth:`MaxBatchModel.largest_batch`) and ``need / fraction > limit``
    (:meth:`MaxBatchModel.planned_memory`)."""
    fraction = float(np.nextafter(need / limit, -np.inf))
    while fraction > 0 and (fraction * limit >= need or need / fraction <= limit):
        fraction = float(np.nextafter(fraction, -np.inf))
    return fraction


def _octaves_outside(size: float, profiled: np.ndarray) -> tuple[str | None, float]:
    """Whether ``size`` lies above (``"up"``) or below (``"down"``) every size in ``profiled``, and by how many
    octaves (log2 of the ratio to the nearest); ``(None, 0.0)`` inside their range or without sizes."""
    known = profiled[profiled > 0] if len(profiled) else profiled
    if size <= 0 or not len(known):
        return None, 0.0
    if size > known.max():
        return "up", float(np.log2(size / known.max()))
    if size < known.min():
        return "down", float(np.log2(known.min() / size))
    return None, 0.0
