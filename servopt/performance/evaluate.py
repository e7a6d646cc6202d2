"""Fitting every performance model a profile supports, with cross-validated error beside a straight-line baseline.

Cross-validation leaves one x value out (a batch size; cores for capacity): the model is fitted on every other
row and predicts the held-out rows. For the per-configuration curves this is exactly "leave one batch size out
per configuration"; the regressors used for unseen configurations see the same batch size missing everywhere,
which is stricter. The baseline is a straight line in the x feature fitted per configuration on the same
training rows (for capacity that is InfAdapter's line). Only configurations profiled
at two or more x values are scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servopt.atomic import atomic_write
from servopt.exceptions import ValidationError
from servopt.performance._curves import fit_line
from servopt.performance.features import (TARGETS, WORK_FEATURE, Target, feature_columns, feature_frame, group_columns,
                                         target_rows)
from servopt.performance.oom import pressure_rows_for

__all__ = ["LATENCY_MODELS", "FittedTarget", "PerformanceModels", "TargetReport", "fit_profile", "make_model", "BUNDLE_FORMAT"]

BUNDLE_FORMAT = "servopt-performance-models/1"
_PREDICTED = {"latency": "latency_ms", "warmup": "warmup_ms", "memory": "memory_mb", "capacity": "throughput_rps"}


#: the latency models ``fit_profile(latency_model=...)`` and ``servopt fit --latency-model`` choose from
LATENCY_MODELS = ("work", "hinge")


def make_model(target: str, estimator: Any = None, latency_model: str = "work", memory_model: str = "family",
               oom_limit_mb: float | None = None, pressure_rows: str = "drop") -> Any:
    """A fresh model for ``target`` (``estimator``: the regressor for unseen configurations, where it applies).

    ``latency_model``: ``"work"`` (:class:`~servopt.performance.WorkLatencyModel`, the default) or ``"hinge"``
    (:class:`~servopt.performance.LatencyModel`, per-configuration curves only); the warm-up model is a multiple
    of the same latency model (:class:`~servopt.performance.RuntimeWarmupModel`). ``memory_model``: the
    :class:`~servopt.performance.MaxBatchModel` structure, ``"family"`` (static + slope x batch x pixels per
    family, the default) or ``"line"`` (a line in batch per configuration, the model before issue 19);
    ``oom_limit_mb``: the limit of the profile's out-of-memory search; ``pressure_rows``: whether the memory rows
    above half of it leave the configurations' lines (:func:`~servopt.performance.oom.pressure_rows_for`).
    """
    from servopt.performance import CapacityModel, LatencyModel, MaxBatchModel, RuntimeWarmupModel, WorkLatencyModel

    if latency_model not in LATENCY_MODELS:
        raise ValidationError(f"latency_model={latency_model!r}: expected one of {', '.join(LATENCY_MODELS)}")
    if target == "latency":
        if latency_model == "work":
            return WorkLatencyModel(estimator=estimator)
        return LatencyModel(estimator=estimator)
    if target == "warmup":
        return RuntimeWarmupModel(estimator=estimator, latency_model=latency_model)
    if target == "memory":
        return MaxBatchModel(structure=memory_model, oom_limit_mb=oom_limit_mb, pressure_rows=pressure_rows)
    if target == "capacity":
        return CapacityModel()
    raise ValidationError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")


@dataclass
class FittedTarget:
    """A fitted model and the feature columns it takes."""

    target: str
    model: Any
    features: list[str]
    text: list[str]
    output: str
    #: multiplicative prediction interval from held-out residuals (:func:`~.uncertainty.conformal_interval`)
    interval: dict[str, Any] | None = None
    #: the training features, for :meth:`PerformanceModels.coverage`
    train: pd.DataFrame | None = None

    def frame(self, query: pd.DataFrame, source: str = "<query>", where: list[str] | None = None) -> pd.DataFrame:
        """The model input for the rows of a query.

        A query may leave out ``hw.*`` columns (what the profiler's monitors saw during a measurement, which a
        query cannot know): they take their median over the profile rows the model was fitted on (only the
        fallback regressors read them). It may also leave out a numeric column that was empty (0: not
        applicable, e.g. ``cores`` on a GPU) in every profile row. Any other missing column is an error
        (:func:`~.features.feature_frame`).
        """
        filled = {c: self._default(c) for c in self.features if c not in query.columns}
        filled = {c: v for c, v in filled.items() if v is not None}
        if filled:
            query = query.assign(**filled)
        X = feature_frame(query, self.features, self.text, source, where)
        self._check_given(X, source, where)
        return X

    def _check_given(self, X: pd.DataFrame, source: str, where: list[str] | None) -> None:
        """Refuses a batch size that is not whole, and an empty ``input_size`` or ``cores`` where every
        profile row the model was fitted on gave one: :func:`~.features.feature_frame` reads it as 0, not
        applicable, and the model predicted 0-pixel images (0.04 ms for 34.5 at 176 px)."""
        where = where or [f"row {i + 1}" for i in range(len(X))]
        if "batch_size" in X.columns and self.features and self.features[0] == "batch_size":
            batch = X["batch_size"].to_numpy(dtype=float)
            whole = batch == np.round(batch)
            if not whole.all():
                i = int(np.argmin(whole))
                raise ValidationError(f"{source}: {where[i]}, column 'batch_size': expected a whole number of "
                                      f"items, got {batch[i]:g}")
        if self.train is None:  # (models saved before it)
            return
        for column in ("input_size", "cores"):
            if column not in X.columns or column in self.text or column not in self.train.columns:
                continue
            trained = pd.to_numeric(self.train[column], errors="coerce").to_numpy(dtype=float)
            given = X[column].to_numpy(dtype=float) > 0
            if len(trained) and bool((trained > 0).all()) and not given.all():
                i = int(np.argmin(given))
                raise ValidationError(
                    f"{source}: {where[i]}, column {column!r}: empty or 0, but every profile row the {self.target} "
                    f"model was fitted on gives one; give the {column.replace('_', ' ')} to predict at")

    def _default(self, column: str) -> float | None:
        """What a query that lacks ``column`` gets (see :meth:`frame`); ``None``: it must give the column."""
        if self.train is None or column not in self.train.columns or column in self.text:
            return None
        values = pd.to_numeric(self.train[column], errors="coerce").fillna(0.0)
        if column.startswith("hw."):
            return float(values.median())
        return 0.0 if bool((values == 0).all()) else None


@dataclass
class GroupResult:
    """Held-out predictions of one configuration."""

    key: dict[str, Any]
    x: np.ndarray
    y: np.ndarray
    predicted: np.ndarray
    baseline: np.ndarray
    features: dict[str, Any] = field(default_factory=dict)  # one row of model input, for plotting the curve

    @property
    def label(self) -> str:
        """Short name of the configuration, e.g. ``efficientnet-b0-amp A100-80GB 224px``."""
        parts = [str(self.key.get("variant") or self.key.get("model", ""))]
        parts += [str(self.key[k]) for k in ("hardware",) if k in self.key]
        if "input_size" in self.key and self.key["input_size"]:
            parts.append(f"{_plain(self.key['input_size'])}px")
        if "cores" in self.key and self.key["cores"]:
            parts.append(f"{_plain(self.key['cores'])} cores")
        if "batch_size" in self.key:
            parts.append(f"batch {_plain(self.key['batch_size'])}")
        extra = [f"{k}={_plain(v)}" for k, v in self.key.items()
                 if k not in ("model", "variant", "hardware", "input_size", "cores", "batch_size")
                 and len(str(v)) <= 16 and str(v) not in parts[0].upper() + parts[0]]
        return " ".join(p for p in parts + extra if p)

    def metrics(self) -> dict[str, Any]:
        return {**{k: _plain(v) for k, v in self.key.items()}, "n": int(len(self.y)),
                "mape": _mape(self.y, self.predicted), "r2": _r2(self.y, self.predicted),
                "baseline_mape": _mape(self.y, self.baseline), "baseline_r2": _r2(self.y, self.baseline)}


@dataclass
class TargetReport:
    """Cross-validated error of one target, overall and per configuration."""

    target: str
    model: str
    baseline: str
    features: list[str]
    groups: list[GroupResult] = field(default_factory=list)
    skipped_groups: int = 0

    def _pooled(self, attr: str) -> np.ndarray:
        parts = [getattr(g, attr) for g in self.groups]
        return np.concatenate(parts) if parts else np.empty(0)

    def to_dict(self, with_groups: bool = True) -> dict[str, Any]:
        """The JSON form printed by ``servopt fit --json``; MAPE is a fraction (0.05 = 5 %)."""
        y, p, base = self._pooled("y"), self._pooled("predicted"), self._pooled("baseline")
        group_metrics = [g.metrics() for g in self.groups]
        out = {
            "mape": _mape(y, p), "r2": _r2(y, p), "baseline_mape": _mape(y, base), "baseline_r2": _r2(y, base),
            "mean_group_mape": _mean([m["mape"] for m in group_metrics]),
            "baseline_mean_group_mape": _mean([m["baseline_mape"] for m in group_metrics]),
            "n_points": int(len(y)), "n_groups": len(self.groups), "skipped_groups": self.skipped_groups,
            "model": self.model, "baseline": self.baseline, "features": list(self.features),
            "cv": "leave one " + ("core count" if TARGETS[self.target].x == "cores" else "batch size") + " out",
        }
        if with_groups:
            out["groups"] = group_metrics
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else (int(value) if float(value).is_integer() else float(value))
    return value


def _mape(y: np.ndarray, p: np.ndarray) -> float | None:
    ok = np.isfinite(p) & (y != 0)
    return float(np.mean(np.abs(p[ok] - y[ok]) / np.abs(y[ok]))) if ok.any() else None


def _r2(y: np.ndarray, p: np.ndarray) -> float | None:
    ok = np.isfinite(p)
    if ok.sum() < 2 or np.var(y[ok]) == 0:
        return None
    return float(1.0 - np.sum((y[ok] - p[ok]) ** 2) / np.sum((y[ok] - y[ok].mean()) ** 2))


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _inputs(rows: pd.DataFrame, target: Target, source: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    columns = feature_columns(rows, target)
    text = [c for c in columns if not pd.api.types.is_numeric_dtype(rows[c])]
    return feature_frame(rows, columns, text, source), columns, text


def _cross_validate(rows: pd.DataFrame, target: Target, X: pd.DataFrame, columns: list[str],
                    estimator: Any, latency_model: str = "work", memory_model: str = "family",
                    oom_limit_mb: float | None = None, progress: Any = None,
                    pressure_rows: str = "drop") -> TargetReport:
    y = rows[target.column].to_numpy(dtype=float)
    x = rows[target.x].to_numpy(dtype=float)
    keys = group_columns(rows, target)
    key_frame = rows[keys].astype(object).where(rows[keys].notna(), None) if keys else pd.DataFrame(index=rows.index)
    group_id = pd.factorize(pd.MultiIndex.from_frame(key_frame.astype(str)) if keys else
                            pd.Index(["all"] * len(rows)))[0]
    predicted = np.full(len(rows), np.nan)
    baseline = np.full(len(rows), np.nan)
    for value in np.unique(x):
        test = x == value
        train = ~test
        if train.sum() < 2:  # the regressors need two points: this value cannot be held out
            if progress is not None:
                progress.advance()
            continue
        model = make_model(target.name, estimator, latency_model, memory_model, oom_limit_mb, pressure_rows)
        model.fit(X[train].reset_index(drop=True), y[train], **_fit_params(target.name, rows[train]))
        labels = _fit_params(target.name, rows[test], fit=False)
        predicted[test] = model.predict(X[test].reset_index(drop=True), **labels)
        for g in np.unique(group_id[test]):
            fit_rows = train & (group_id == g)
            at = test & (group_id == g)
            if fit_rows.any():
                line = fit_line(x[fit_rows], y[fit_rows])
                baseline[at] = line(x[at])
        if progress is not None:
            progress.advance()
    name = type(make_model(target.name, estimator, latency_model, memory_model)).__name__
    report = TargetReport(target.name, name,
                          f"straight line in {target.x.replace('_', ' ')} per configuration", columns)
    for g in np.unique(group_id):
        at = group_id == g
        if np.unique(x[at]).size < 2:
            report.skipped_groups += 1
            continue
        order = np.argsort(x[at], kind="stable")
        key = {k: key_frame[k].to_numpy()[at][0] for k in keys}
        first = int(np.flatnonzero(at)[0])
        report.groups.append(GroupResult({k: v for k, v in key.items() if v is not None and v != ""},
                                         x[at][order], y[at][order], predicted[at][order], baseline[at][order],
                                         X.iloc[first].to_dict()))
    return report


def _empty_or(method: Any, X: pd.DataFrame, limit: float, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``method(X, limit)``; for an empty ``X`` (after checking the limit) empty arrays under ``keys``."""
    if not X.empty:
        return method(X, limit)
    from servopt.performance.oom import check_limit

    check_limit(limit, method.__name__)
    return {k: np.empty(0) for k in keys}


@dataclass
class PerformanceModels:
    """Models fitted on a profile, one per target, saved and loaded by ``servopt fit -o`` / ``servopt predict``."""

    targets: dict[str, FittedTarget]
    sources: list[str]
    format: str = BUNDLE_FORMAT

    def predict(self, query: pd.DataFrame, source: str = "<query>", where: list[str] | None = None,
                targets: list[str] | None = None, intervals: bool = False) -> pd.DataFrame:
        """Every target for each query row: columns ``latency_ms``, ``warmup_ms``, ``memory_mb``,
        ``throughput_rps`` (those fitted); with ``intervals`` also ``<column>_lo`` and ``<column>_hi``, the
        prediction interval at the level stored by ``fit_profile`` (targets that were cross-validated), wider
        (the extrapolation residuals) for rows that extrapolate in batch, input size or hardware."""
        out: dict[str, np.ndarray] = {}
        for name, fitted in self.targets.items():
            if targets is not None and name not in targets:
                continue
            X = fitted.frame(query, source, where)
            if X.empty:  # an empty query: empty columns
                bounds = ("_lo", "_hi") if intervals and fitted.interval is not None else ()
                out.update({fitted.output + suffix: np.empty(0) for suffix in ("", *bounds)})
                continue
            out[fitted.output] = predicted = fitted.model.predict(X)
            if intervals and fitted.interval is not None:
                from servopt.performance.uncertainty import interval_factors

                lo, hi = interval_factors(fitted.interval, *self._outside(fitted, X))
                out[f"{fitted.output}_lo"] = predicted * lo
                out[f"{fitted.output}_hi"] = predicted * hi
        return pd.DataFrame(out)

    def largest_batch(self, query: pd.DataFrame, memory_limit_mb: float, source: str = "<query>",
                      where: list[str] | None = None) -> pd.DataFrame:
        """Per query row (its batch size ignored), the largest batch the memory model predicts to fit in
        ``memory_limit_mb`` and the margin it held back: columns ``max_batch``, ``max_batch_usable_fraction``,
        ``max_batch_oom_margin`` and ``max_batch_basis`` (:meth:`MaxBatchModel.largest_batch
        <servopt.performance.MaxBatchModel.largest_batch>`).

        Raises
        ------
        ValidationError
            The models have no memory target (the profile had no ``memory_mb``), or the limit is not > 0.
        """
        fitted = self._memory_target(source, "the largest batch")
        got = _empty_or(fitted.model.largest_batch, fitted.frame(query, source, where), memory_limit_mb,
                        ("max_batch", "usable_fraction", "oom_margin", "basis"))
        return pd.DataFrame({f"max_batch_{k}" if k != "max_batch" else k: v for k, v in got.items()})

    def planned_memory(self, query: pd.DataFrame, memory_limit_mb: float, source: str = "<query>",
                       where: list[str] | None = None) -> pd.DataFrame:
        """Per query row (at its batch size), the memory a plan under ``memory_limit_mb`` counts for it: the
        prediction divided by the usable fraction of the limit (:meth:`MaxBatchModel.planned_memory
        <servopt.performance.MaxBatchModel.planned_memory>`). Columns ``planned_memory_mb``,
        ``usable_fraction``, ``oom_margin`` and ``basis``.

        Raises
        ------
        ValidationError
            The models have no memory target, or the limit is not > 0.
        """
        fitted = self._memory_target(source, "the memory of a plan")
        got = _empty_or(fitted.model.planned_memory, fitted.frame(query, source, where), memory_limit_mb,
                        ("memory_mb", "usable_fraction", "oom_margin", "basis"))
        return pd.DataFrame({("planned_memory_mb" if k == "memory_mb" else k): v for k, v in got.items()})

    def _memory_target(self, source: str, what: str) -> FittedTarget:
        fitted = self.targets.get("memory")
        if fitted is None:
            raise ValidationError(f"{source}: {what} needs a memory model, and these models have none "
                                  f"(the profile they were fitted on has no memory_mb rows)")
        return fitted

    @staticmethod
    def _placement(fitted: FittedTarget, X: pd.DataFrame, octaves: bool) -> pd.DataFrame:
        """:func:`~.uncertainty.coverage` of the rows ``X`` (``fitted.train`` set) and, with ``octaves``, a column
        ``batch_octaves`` (:func:`~.uncertainty.extrapolation_octaves`), from one lookup of the profiled ranges."""
        from servopt.performance.uncertainty import _profiled_x, coverage, extrapolation_octaves

        x = TARGETS[fitted.target].x
        profiled = _profiled_x(fitted.train, X, x)
        out = coverage(fitted.train, X, x, profiled)
        if octaves:
            out["batch_octaves"] = extrapolation_octaves(fitted.train, X, x, profiled)
        return out

    @classmethod
    def _outside(cls, fitted: FittedTarget, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Per row: whether it extrapolates (x feature, input size or hardware), by how many octaves beyond the
        profiled range of the x feature, and where its input size sits (``profiled``, ``interpolated`` or
        ``extrapolated``; None without an input-size feature): the arguments of
        :func:`~.uncertainty.interval_factors`."""
        if fitted.train is None:
            return np.zeros(len(X), dtype=bool), np.zeros(len(X)), None
        where = cls._placement(fitted, X, octaves=True)
        octaves = where.pop("batch_octaves").to_numpy(dtype=float)
        sizes = where["input_size"].to_numpy() if "input_size" in where.columns else None
        return np.asarray(where.isin(["extrapolated", "unseen"]).any(axis=1)), octaves, sizes

    def coverage(self, query: pd.DataFrame, source: str = "<query>", where: list[str] | None = None,
                 target: str = "latency", octaves: bool = False) -> pd.DataFrame:
        """Per query row, whether ``target``'s x feature and input size were profiled, interpolated or
        extrapolated, and whether the hardware was profiled (:func:`~.uncertainty.coverage`); with ``octaves``
        also ``batch_octaves``: how many octaves the x feature lies beyond the profiled range of its
        configuration (0 inside it; :func:`~.uncertainty.extrapolation_octaves`), from the same lookup of the
        profiled ranges. Empty if the target was not fitted or the models file predates this."""
        fitted = self.targets.get(target)
        if fitted is None or fitted.train is None:
            return pd.DataFrame(index=range(len(query)))
        return self._placement(fitted, fitted.frame(query, source, where), octaves)

    def save(self, path: str | Path) -> Path:
        """Write with joblib, atomically (temp file, then rename)."""
        import joblib


        path = Path(path)
        with atomic_write(path) as handle:
            joblib.dump(self, handle)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PerformanceModels:
        """Read a file written by :meth:`save`. Only load files you trust: joblib runs code from the file."""
        import joblib

        path = Path(path)
        if not path.is_file():
            raise ValidationError(f"{path}: no such models file (write one with `servopt fit ... -o {path.name}`)")
        try:
            bundle = joblib.load(path)
        except Exception as exc:  # joblib/pickle raise many types on a foreign or corrupt file
            raise ValidationError(f"{path}: not a servopt models file ({type(exc).__name__}: {exc})") from None
        if not isinstance(bundle, cls) or getattr(bundle, "format", None) != BUNDLE_FORMAT:
            raise ValidationError(f"{path}: not a servopt models file of format {BUNDLE_FORMAT} (write one with "
                                  "`servopt fit PROFILE -o MODELS.joblib`)")
        return bundle


def _fit_params(target: str, rows: pd.DataFrame, fit: bool = True) -> dict[str, Any]:
    """The profile rows the warm-up model reads besides its features (``RuntimeWarmupModel``: latencies to fit
    on; labels that say how the runtime warmed up, in ``predict`` too, never the latency or warm-up predicted)."""
    if target != "warmup":
        return {}
    from servopt.performance.warmup_runtime import RUNTIME_COLUMNS

    keep = [c for c in RUNTIME_COLUMNS if c in rows.columns and (fit or c != "latency_ms")]
    return {"profile": rows[keep].reset_index(drop=True)}


def _interval(report: TargetReport, level: float, sizes: tuple[np.ndarray, ...] | None = None) -> dict[str, Any]:
    """The interval of a target from its leave-one-batch-out residuals and, with ``sizes`` (the result of
    :func:`_size_residuals`), the pools of the rows of an input size held out (``size``, ``size_edge``)."""
    from servopt.performance.uncertainty import conformal_interval, with_size_pools

    y, p = report._pooled("y"), report._pooled("predicted")
    edge = np.concatenate([(g.x == g.x.min()) | (g.x == g.x.max()) for g in report.groups])
    interval = conformal_interval(y, p, edge, level, np.concatenate([_edge_octaves(g.x) for g in report.groups]))
    return interval if sizes is None else with_size_pools(interval, *sizes, level)


def _size_residuals(rows: pd.DataFrame, target: Target, X: pd.DataFrame, estimator: Any, latency_model: str,
                    progress: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Leave one input size out (latency): each profiled input size in turn is held out and predicted by a model
    fitted on the other sizes, queried without its ``gflops`` (as a size with no graph: the work latency model
    then takes the FLOPs from its polynomial in input size). Only rows whose family (the configuration without its
    input size) kept another size count. Returns ``(y, predicted, edge)``, ``edge`` marking rows whose size lay
    outside the family's other sizes (an extrapolation in size), or None for other targets, fewer than two sizes
    or no qualifying row.

    Why: an unprofiled input size is a different prediction from an unprofiled batch (another path of the latency
    model: the profiled sizes' latencies at the same work), and its errors are not those of leave one batch out;
    on the fresh CPU graphs the batch residuals' interval held 72 % of the interior sizes and 84 % of the top ones
    at the 90 % level (``benchmarks/interval_coverage.py``)."""
    if target.name != "latency" or "input_size" not in X.columns:
        return None
    size = X["input_size"].to_numpy(dtype=float)
    values = np.unique(size[np.isfinite(size)])
    if values.size < 2:
        return None
    if progress is not None:
        progress.stage("cross-validating latency (one fold per input size)", int(values.size))
    family_cols = [c for c in group_columns(rows, target) if c != "input_size"]
    family = (pd.factorize(pd.MultiIndex.from_frame(rows[family_cols].astype(str)))[0] if family_cols
              else np.zeros(len(rows), dtype=int))
    y = rows[target.column].to_numpy(dtype=float)
    predicted = np.full(len(rows), np.nan)
    edge = np.zeros(len(rows), dtype=bool)
    counted = np.zeros(len(rows), dtype=bool)
    for value in values:
        test = size == value
        train = ~test & np.isfinite(size)
        kept = {f: size[train & (family == f)] for f in np.unique(family[test])}
        at = test & np.array([kept.get(f, np.empty(0)).size > 0 for f in family])
        if progress is not None:
            progress.advance()
        if not at.any() or train.sum() < 2:
            continue
        model = make_model(target.name, estimator, latency_model).fit(X[train].reset_index(drop=True), y[train])
        query = X[at].reset_index(drop=True)
        if WORK_FEATURE in query.columns and latency_model == "work":  # the hinge takes no unknown work
            query = query.assign(**{WORK_FEATURE: np.nan})
        predicted[at] = model.predict(query)
        edge[at] = [not (kept[f].min() < value < kept[f].max()) for f in family[at]]
        counted |= at
    if not counted.any():
        return None
    return y[counted], predicted[counted], edge[counted]


def _edge_octaves(x: np.ndarray) -> np.ndarray:
    """For a configuration's held-out x values: how far the smallest and the largest lay from the nearest value
    left in the fit, in octaves (0 for the others)."""
    out = np.zeros(len(x))
    values = np.unique(x[x > 0])
    if values.size >= 2:
        out[x == values[0]] = np.log2(values[1] / values[0])
        out[x == values[-1]] = np.log2(values[-1] / values[-2])
    return out


def _oom_boundaries(rows: pd.DataFrame, X: pd.DataFrame, columns: list[str], oom_limit_mb: float | None,
                    source: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """The out-of-memory boundaries to calibrate the memory model on, with the limit of each search.

    The limit is ``oom_limit_mb`` when given (``servopt fit --oom-limit-mb``, for every boundary; refused where
    the profile's ``oom_limit_mb`` column records another), else that column (``servopt profile
    --memory-limit-mb`` writes it); boundaries whose limit neither says are left out (nothing to calibrate
    against).
    """
    from servopt.performance.memory import boundaries_from_profile, profile_oom_limits

    if oom_limit_mb is None and not profile_oom_limits(rows, source).size:
        return None, np.empty(0), np.empty(0)
    extra = {c: rows[c].to_numpy() for c in ("oom_batch_size", "oom_limit_mb") if c in rows.columns}
    bounds, largest, limits = boundaries_from_profile(X.assign(**extra), columns, with_limits=True)
    known = np.isfinite(limits)
    if oom_limit_mb is not None:
        other = sorted({float(v) for v in limits[known] if float(v) != float(oom_limit_mb)})
        if other:
            raise ValidationError(
                f"{source}: oom_limit_mb={float(oom_limit_mb):g} (servopt fit --oom-limit-mb), but the profile's "
                f"oom_limit_mb column says its searches ran under {', '.join(f'{v:g}' for v in other)} MiB; leave "
                "it out (it is for profiles that do not record their limit)")
        return bounds, largest, np.full(len(largest), float(oom_limit_mb))
    return bounds[known].reset_index(drop=True), largest[known], limits[known]


def fit_profile(frame: pd.DataFrame, *, source: str = "<profile>", targets: list[str] | None = None,
                cross_validate: bool = True, estimator: Any = None, latency_model: str = "work",
                level: float = 0.9, memory_model: str = "family", oom_limit_mb: float | None = None,
                progress: Any = None) -> tuple[PerformanceModels, dict[str, TargetReport]]:
    """Fit every target the profile supports and cross-validate it.

    Parameters
    ----------
    frame : pandas.DataFrame
        A validated profile (:attr:`servopt.profiles.ProfileTable.frame`).
    targets : list of str, optional
        Subset of ``latency``, ``warmup``, ``memory``, ``capacity``; default: all the profile supports.
    cross_validate : bool
        Also compute the held-out error (one fit per distinct x value).
    estimator : regressor, optional
        Regressor for unseen configurations (latency) and for warm-up.
    latency_model : {"work", "hinge"}
        :class:`~servopt.performance.WorkLatencyModel` (default) or :class:`~servopt.performance.LatencyModel`.
    level : float, default 0.9
        Level of the prediction intervals computed from the held-out residuals (with ``cross_validate``).
    memory_model : {"family", "line"}
        :class:`~servopt.performance.MaxBatchModel` structure (see :func:`make_model`).
    oom_limit_mb : float, optional
        The memory limit the profile's out-of-memory search ran under (``servopt profile --memory-limit-mb``):
        the memory model is calibrated on the rows' ``oom_batch_size`` (:meth:`MaxBatchModel.calibrate`; its
        ``oom_margin_`` and ``margins()`` say the margin used). Default: the profile's ``oom_limit_mb`` column,
        which the profiler writes; where neither gives a limit the rows' boundaries are not used.
    progress : servopt.progress.Progress, optional
        Told each stage (the final fit of a target, its cross-validation with one step per held-out value).

    Returns
    -------
    (PerformanceModels, dict)
        The fitted models, and per target a :class:`TargetReport` (only targets that could be cross-validated:
        some configuration profiled at two or more x values).
    """
    wanted = list(targets) if targets is not None else list(TARGETS)
    unknown = [t for t in wanted if t not in TARGETS]
    if unknown:
        raise ValidationError(f"unknown target(s) {', '.join(unknown)}; expected some of {', '.join(TARGETS)}")
    fitted: dict[str, FittedTarget] = {}
    reports: dict[str, TargetReport] = {}
    for name in wanted:
        target = TARGETS[name]
        rows = target_rows(frame, target).reset_index(drop=True)
        if rows.empty:
            continue
        if len(rows) < 2:
            others = [t for t in TARGETS if t != name and len(target_rows(frame, TARGETS[t])) >= 2]
            instead = (f", or choose other targets with --targets (here: {', '.join(others)})" if others else
                       f" (no other target has 2 or more points in {source})")
            raise ValidationError(
                f"{source}: target {name!r} (column {target.column!r}) has {len(rows)} profiled point; at least 2 "
                f"are needed to fit a model. Profile more batch sizes or cores{instead}"
            )
        X, columns, text = _inputs(rows, target, source)
        if name == "warmup":  # the run's first point and max-batch rows, from the whole profile's order
            from servopt.performance.warmup_runtime import with_run_flags

            rows = with_run_flags(rows)
        y = rows[target.column].to_numpy(dtype=float)
        limit, bounds, largest, limits = None, None, np.empty(0), None
        if name == "memory":
            bounds, largest, limits = _oom_boundaries(rows, X, columns, oom_limit_mb, source)
            # no search ran: no row was measured under the limit
            limit = float(np.min(limits)) if len(largest) else None
        if progress is not None:
            progress.stage(f"fitting {name} on {len(rows):,} rows")
        pressure = pressure_rows_for(rows) if name == "memory" else "drop"  # only the memory model reads it
        model = make_model(name, estimator, latency_model, memory_model, limit, pressure)
        model.fit(X, y, **_fit_params(name, rows))
        if len(largest):
            model.calibrate(bounds, largest, limits)
        fitted[name] = FittedTarget(name, model, columns, text, _PREDICTED[name], train=X)
        if cross_validate:
            if progress is not None:
                progress.stage(f"cross-validating {name} (one fold per {target.x.replace('_', ' ')})",
                               int(rows[target.x].nunique()))
            report = _cross_validate(rows, target, X, columns, estimator, latency_model, memory_model, limit,
                                     progress, pressure)
            if report.groups:
                reports[name] = report
                sizes = _size_residuals(rows, target, X, estimator, latency_model, progress)
                fitted[name].interval = _interval(report, level, sizes)
    if not fitted:
        needs = "; ".join(f"{t}: {TARGETS[t].column} per {TARGETS[t].x}" +
                          (" at three or more core counts" if t == "capacity" else "") for t in wanted)
        raise ValidationError(f"{source}: nothing to fit: no rows for the target(s) asked ({needs})")
    return PerformanceModels(fitted, [source]), reports
