"""Warm-up structured by runtime: session creation, first run per shape, autotuning, on a latency model.

:class:`RuntimeWarmupModel` is what ``servopt fit`` uses for warm-up (docs/performance-models.md, "Warm-up");
:func:`runtime_context` reads how each profile row was warmed up from the profiler's labels.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.utils.validation import check_is_fitted

from servopt.exceptions import ValidationError
from servopt.performance._base import ProfileRegressor
from servopt.performance.features import WORK_FEATURE
from servopt.performance.latency import LatencyModel
from servopt.performance.warmup import WarmupModel
from servopt.performance.work_latency import WorkLatencyModel
from servopt.performance.work_poly import WorkColumnMixin

__all__ = ["OVERHEAD_RATIO", "RUNTIME_COLUMNS", "RuntimeWarmupModel", "runtime_context", "runtime_of",
           "with_run_flags"]

#: a point is overhead-dominated when its warm-up exceeds this multiple of its steady-state latency
OVERHEAD_RATIO = 1.5
#: profile columns :class:`RuntimeWarmupModel` reads besides the features (``profile=`` of ``fit``/``predict``)
RUNTIME_COLUMNS = ("latency_ms", "framework", "source", "oom_batch_size", "model", "variant", "hardware", "cores",
                   "input_size", "batch_size", "first_in_run", "seen_shape")
#: ``RuntimeWarmupModel(latency_model=...)``: the latency model the warm-up is a multiple of
LATENCY_MODELS = {"work": WorkLatencyModel, "hinge": LatencyModel}
#: ``RuntimeWarmupModel(ratio=...)``: an ONNX Runtime configuration's warm-up / latency ratio, a line in log batch
#: or one median
RATIOS = ("batch", "constant")


def runtime_of(framework: Any) -> str:
    """The runtime a profile row was measured with: ``torch`` (``framework`` "torch 2.11...") or ``onnxruntime``
    (servopt's ONNX path writes no ``framework``); other frameworks by their first word, lower case.

    Examples
    --------
    >>> runtime_of("torch 2.11.0+cu130"), runtime_of(None), runtime_of(float("nan"))
    ('torch', 'onnxruntime', 'onnxruntime')
    """
    import pandas as pd

    if framework is None or (not isinstance(framework, str) and pd.isna(framework)) or not str(framework).strip():
        return "onnxruntime"
    return str(framework).strip().split()[0].rstrip(",").lower()


def runtime_context(rows: Any) -> Any:
    """Per profile row (in the order measured): ``runtime``, ``config`` (model, variant, hardware, cores),
    ``run`` (the profiling command in ``source`` plus the config), ``size`` (input size), ``first_in_run`` (the run's
    first point: process-wide initialisation such as cuDNN/cuBLAS) and ``seen_shape`` (the largest batch found by
    ``--find-max-batch``, whose shape the search ran before the row was measured).

    ``first_in_run`` and ``seen_shape`` are taken from columns of those names where ``rows`` has them: a subset of
    a profile (a cross-validation fold) must carry the flags of the whole profile, since its own first row per run
    is not the run's first point (:func:`with_run_flags`)."""
    import pandas as pd

    rows = rows.reset_index(drop=True)
    n = len(rows)

    def text(column: str) -> pd.Series:
        if column not in rows.columns:
            return pd.Series([""] * n)
        if column in ("cores", "input_size"):  # as a profile gives them and as a query's features do
            return pd.Series([_number_token(v) for v in rows[column]], dtype=object)
        return rows[column].astype(object).where(rows[column].notna(), "").astype(str)

    config = text("model") + "|" + text("variant") + "|" + text("hardware") + "|" + text("cores")
    run = text("source") + "#" + config
    framework = rows["framework"] if "framework" in rows.columns else pd.Series([None] * n)
    seen = np.zeros(n, dtype=bool)
    if "oom_batch_size" in rows.columns and "batch_size" in rows.columns:
        oom = pd.to_numeric(rows["oom_batch_size"], errors="coerce").to_numpy(dtype=float)
        seen = np.isfinite(oom) & (oom - 1 == rows["batch_size"].to_numpy(dtype=float))
    first = (run.groupby(run).cumcount() == 0).to_numpy()
    if "first_in_run" in rows.columns:
        first = rows["first_in_run"].fillna(False).astype(bool).to_numpy()
    if "seen_shape" in rows.columns:
        seen = rows["seen_shape"].fillna(False).astype(bool).to_numpy()
    return pd.DataFrame({"runtime": [runtime_of(v) for v in framework], "config": config, "run": run,
                         "size": text("input_size"), "first_in_run": first, "seen_shape": seen})


def _number_token(value: Any) -> str:
    """A number of a configuration key as text, the same whether it comes from a profile row or from a query's
    feature frame: empty, NaN and 0 (not applicable: ``cores`` on a GPU) are ``""``; 224 and 224.0 are ``"224"``.
    (Before, a query's feature frame gave ``"0.0"`` and ``"224.0"`` where the profile had given ``""`` and ``"224"``,
    so no configuration of a GPU profile matched in ``predict``: every warm-up came from the fallback regressor,
    74-78 ms at 224 px on the H200 resnet50 fp16 profile where the structured model gives 66 and 64-66 were
    measured.)

    >>> [_number_token(v) for v in (None, float("nan"), 0.0, 224, 224.0, "224", 0.5, "")]
    ['', '', '', '224', '224', '224', '0.5', '']
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "" if value is None else str(value).strip()
    if not np.isfinite(number) or number == 0:
        return ""
    return str(int(number)) if number.is_integer() else f"{number:g}"


def _key_token(key: str) -> str:
    """A configuration, run or size key of a model saved before :func:`_number_token` with its numbers rewritten
    (``src#m|v|cpu|2.0@224.0`` -> ``src#m|v|cpu|2@224``); other keys unchanged.

    >>> _key_token("src#m|v|cpu|2.0@224.0"), _key_token("m|v|H200|"), _key_token("onnxruntime")
    ('src#m|v|cpu|2@224', 'm|v|H200|', 'onnxruntime')
    """
    base, at, size = key.rpartition("@") if "@" in key else (key, "", "")
    source, hash_, config = base.rpartition("#") if "#" in base else ("", "", base)
    parts = config.split("|")
    if len(parts) == 4:
        parts[3] = _number_token(parts[3])
    return source + hash_ + "|".join(parts) + (at + _number_token(size) if at else "")


def with_run_flags(rows: Any) -> Any:
    """``rows`` (a whole profile, in the order measured) with the ``first_in_run`` and ``seen_shape`` columns of
    :func:`runtime_context`, so that subsets keep them."""
    ctx = runtime_context(rows)
    return rows.assign(first_in_run=ctx["first_in_run"].to_numpy(), seen_shape=ctx["seen_shape"].to_numpy())


class RuntimeWarmupModel(WorkColumnMixin, ProfileRegressor):
    """Warm-up time structured by how the runtime warms up, on a latency model of the same point.

    servopt's profiler measures warm-up differently per runtime (docs/profiler.md), and the model follows it:

    * **ONNX Runtime** (a fresh session per point): the first run of a new session, ``W = r_c(b) * L(b, s)``:
      ``log r_c(b)`` is a Theil-Sen line in ``log b`` through the configuration's (model, variant, hardware,
      cores) measured ``log(warm-up / latency)``, held at its value at the smallest and largest profiled batch
      beyond them (the first run's extra cost, allocating the arena and packing weights, is not a constant
      multiple of the steady state: on the fresh CPU graphs of ``benchmarks/fresh_cpu.py`` the median ratio of
      MobileNet-like graphs grows from 1.37 at batch 1 to 1.81 at batch 64, ResNet-like 1.21 to 1.35). With one
      profiled batch, or ``ratio="constant"`` (the model before), the configuration's median ratio.
    * **PyTorch** (one process, each point a new input shape, ascending): ``W = max(S, k * L(b, s))``: a per-shape
      setup ``S`` (kernel selection, allocator growth; with fp16 on CUDA cuDNN's per-shape algorithm search, about
      1.3 s for MobileNet-V3) that overlaps the run, so a long batch hides it. ``S`` is the median warm-up of the
      overhead-dominated points (warm-up > 1.5 x latency) of the same run and input size, else of the run, of the
      configuration and input size, of the configuration, of the runtime. ``k`` is the median ratio of the
      latency-dominated points. The run's first point adds process-wide initialisation (cuDNN/cuBLAS handles,
      CUDA module loading): ``W = f * S``, ``f`` the geometric mean over the training runs; a shape the
      max-batch search ran before its row (``seen_shape``) has no setup left: ``W = k * L``.

    ``L(b, s)`` is a :class:`~servopt.performance.WorkLatencyModel` (``latency_model="work"``, the default; the
    latency model of ``servopt fit``) or a :class:`~servopt.performance.LatencyModel` (``"hinge"``, the model
    before) fitted on the same rows' measured latencies and evaluated at the queried rows, so a prediction never
    uses the measured latency of the point it predicts, and off the grid (a larger batch, an unprofiled input size)
    the warm-up follows the latency model's extrapolation.
    Without ``profile=`` (or without latencies) the model is :class:`WarmupModel` (LightGBM); configurations of a
    runtime never seen in ``fit`` also go to it.

    Parameters
    ----------
    estimator : regressor, optional
        The regressor of the fallback :class:`WarmupModel` (default LightGBM).
    latency_model : {"work", "hinge"}
        The latency model ``L`` (see above).
    ratio : {"batch", "constant"}
        An ONNX Runtime configuration's warm-up / latency ratio: a line in log batch or its median.

    Attributes
    ----------
    fallback_ : WarmupModel
        Fitted on the features alone; its ``feature_importances_`` are this model's.
    structured_ : bool
        Whether the runtime structure was fitted (``profile`` with latencies was given).
    latency_ : WorkLatencyModel or LatencyModel
        ``L``, fitted on the training rows' measured latencies.
    ratio_ : dict
        Median warm-up / latency ratio per ``("config", configuration)`` and per ``("runtime", runtime)`` (ONNX
        Runtime rows).
    ratio_line_ : dict
        Configuration -> ``(low, high, intercept, slope)`` of its ratio line in log batch (``ratio="batch"``,
        configurations profiled at two batch sizes or more).

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"model": "m", "hardware": "H200", "framework": "torch 2.11", "source": "run1",
    ...                      "input_size": 224, "batch_size": [1, 2, 4, 64, 128, 256],
    ...                      "latency_ms": [3.0, 3.1, 3.2, 20.0, 40.0, 80.0]})
    >>> y = [900.0, 60.0, 62.0, 61.0, 41.0, 82.0]
    >>> X = rows[["batch_size", "model", "hardware", "input_size"]]
    >>> model = RuntimeWarmupModel().fit(X, y, profile=rows)
    >>> [round(v) for v in model.predict(X.iloc[[2, 5]])]
    [61, 82]
    """

    #: a model saved before 60e186b: a multiple of the soft hinge, one ratio per configuration
    _params_before: ClassVar[dict[str, Any]] = {"latency_model": "hinge", "ratio": "constant"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # a model saved before its keys' numbers were written one way (cores "2.0" -> "2", sizes "224.0" -> "224")
        for name in ("runtime_of_config_", "ratio_line_"):
            if isinstance(self.__dict__.get(name), dict):
                self.__dict__[name] = {_key_token(k): v for k, v in self.__dict__[name].items()}
        for name in ("ratio_", "setup_"):
            if isinstance(self.__dict__.get(name), dict):
                self.__dict__[name] = {(k[0], _key_token(k[1])): v for k, v in self.__dict__[name].items()}

    def __init__(self, estimator: Any = None, latency_model: str = "work", ratio: str = "batch") -> None:
        self.estimator = estimator
        self.latency_model = latency_model
        self.ratio = ratio

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        return tags

    @property
    def feature_importances_(self) -> np.ndarray:
        """The fallback LightGBM's importances (the structure has no per-feature importance)."""
        check_is_fitted(self, "fallback_")
        return self.fallback_.feature_importances_

    def fit(self, X: Any, y: Any, profile: Any = None) -> RuntimeWarmupModel:
        """Fit the fallback on the features and, with ``profile`` (the rows ``X`` was made from, same order, with
        ``latency_ms`` and where known ``framework``, ``source``, ``oom_batch_size``), the runtime structure."""
        import pandas as pd

        if self.latency_model not in LATENCY_MODELS:
            raise ValidationError(f"RuntimeWarmupModel: latency_model={self.latency_model!r}; expected one of "
                                  f"{', '.join(LATENCY_MODELS)}")
        if self.ratio not in RATIOS:
            raise ValidationError(f"RuntimeWarmupModel: ratio={self.ratio!r}; expected one of {', '.join(RATIOS)}")
        X = self._with_work(X, [str(c) for c in getattr(X, "columns", [])])
        Xv, yv = self._validate(X, y, reset=True)
        if np.any(yv <= 0):
            raise ValidationError(f"RuntimeWarmupModel: warm-up times must be > 0, got {float(yv.min())!r}")
        self.fallback_ = WarmupModel(estimator=self.estimator).fit(X, yv)
        self.structured_ = False
        if profile is None or not isinstance(X, pd.DataFrame) or "latency_ms" not in getattr(profile, "columns", ()):
            return self
        if len(profile) != len(X):
            raise ValidationError(f"RuntimeWarmupModel: profile has {len(profile)} rows, X {len(X)}")
        latency = pd.to_numeric(profile["latency_ms"], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(latency) & (latency > 0)):
            return self
        self.design_ = [c for c in X.columns if not str(c).startswith("hw.")
                        and (self.latency_model == "work" or c != WORK_FEATURE)]  # the hinge knows no FLOPs
        self.latency_ = LATENCY_MODELS[self.latency_model]().fit(X[self.design_].reset_index(drop=True), latency)
        self._fit_structure(runtime_context(profile), yv, latency, _batch_of(X))
        self.structured_ = True
        return self

    def _fit_structure(self, ctx: Any, y: np.ndarray, latency: np.ndarray, batch: np.ndarray | None) -> None:
        ratio = y / latency
        runtime = ctx["runtime"].to_numpy()
        shape = runtime == "torch"
        plain = ~ctx["first_in_run"].to_numpy() & ~ctx["seen_shape"].to_numpy()
        self.runtime_of_config_ = dict(zip(ctx["config"], runtime))
        self.ratio_: dict[Any, float] = {}
        self.ratio_line_: dict[str, tuple[float, float, float, float]] = {}
        for key, part in _groups([("config", ctx["config"]), ("runtime", ctx["runtime"])], ~shape):
            self.ratio_[key] = float(np.median(ratio[part]))
            if self.ratio == "batch" and key[0] == "config" and batch is not None:
                line = _ratio_line(np.log(batch[part]), np.log(ratio[part]))
                if line is not None:
                    self.ratio_line_[key[1]] = line
        over = shape & plain & (ratio > OVERHEAD_RATIO)
        levels = [("run+size", ctx["run"] + "@" + ctx["size"]), ("run", ctx["run"]),
                  ("config+size", ctx["config"] + "@" + ctx["size"]), ("config", ctx["config"]),
                  ("runtime", ctx["runtime"])]
        self.setup_ = {key: float(np.median(y[part])) for key, part in _groups(levels, over)}
        bound = shape & plain & (ratio <= OVERHEAD_RATIO)
        self.k_ = float(np.median(ratio[bound])) if bound.any() else 1.0
        factors = []
        for i in np.flatnonzero(shape & ctx["first_in_run"].to_numpy()):
            s = self._setup(ctx.iloc[i])
            if s is not None:
                factors.append(y[i] / s)
        self.first_factor_ = float(np.exp(np.mean(np.log(factors)))) if factors else 1.0

    def _setup(self, row: Any) -> float | None:
        for key in (("run+size", row["run"] + "@" + row["size"]), ("run", row["run"]),
                    ("config+size", row["config"] + "@" + row["size"]), ("config", row["config"]),
                    ("runtime", row["runtime"])):
            if key in self.setup_:
                return self.setup_[key]
        return None

    def predict(self, X: Any, profile: Any = None) -> np.ndarray:
        """Warm-up time of each row (ms). ``profile`` (optional, the query rows with ``framework``, ``source``,
        ``oom_batch_size``, same order) tells first-in-run and seen-shape rows apart; without it every row is a new
        shape of a configuration as profiled."""
        import pandas as pd

        self._check_predict(X)
        fallback_names = [str(n) for n in getattr(self.fallback_, "feature_names_in_", [])]
        out = self.fallback_.predict(self._with_work(X, fallback_names))
        if not self.structured_:
            return out
        frame = X.reset_index(drop=True)
        ctx = runtime_context(profile if profile is not None else frame)
        if profile is None or "framework" not in profile.columns:  # the runtime the configuration was profiled with
            ctx["runtime"] = [self.runtime_of_config_.get(c, "") for c in ctx["config"]]
            if profile is None:
                ctx["first_in_run"] = False
                ctx["seen_shape"] = False
        latency = self.latency_.predict(frame[self.design_])
        batch = _batch_of(frame)
        for i in range(len(frame)):
            row = ctx.iloc[i]
            value = self._structured(row, float(latency[i]), None if batch is None else float(batch[i]))
            if value is not None:
                out[i] = value
        return np.asarray(out, dtype=float) if not isinstance(out, pd.Series) else out.to_numpy(dtype=float)

    def _structured(self, row: Any, latency: float, batch: float | None) -> float | None:
        if row["runtime"] == "torch":
            if row["seen_shape"]:
                return self.k_ * latency
            setup = self._setup(row)
            if setup is None:
                return None
            if row["first_in_run"]:
                return self.first_factor_ * setup
            return max(setup, self.k_ * latency)
        line = getattr(self, "ratio_line_", {}).get(row["config"])  # models saved before have no lines
        if line is not None and batch is not None and batch > 0:
            low, high, intercept, slope = line
            return float(np.exp(intercept + slope * min(max(np.log(batch), low), high))) * latency
        for key in (("config", row["config"]), ("runtime", row["runtime"])):
            if key in self.ratio_:
                return self.ratio_[key] * latency
        return None


def _batch_of(X: Any) -> np.ndarray | None:
    """The batch size of each row of ``X`` (None when ``X`` has no ``batch_size`` column)."""
    if "batch_size" not in getattr(X, "columns", ()):
        return None
    return np.asarray(X["batch_size"], dtype=float)


def _ratio_line(log_batch: np.ndarray, log_ratio: np.ndarray) -> tuple[float, float, float, float] | None:
    """``(low, high, intercept, slope)``: the Theil-Sen line of ``log_ratio`` in ``log_batch`` and the range of
    ``log_batch`` it holds in (None with fewer than two distinct batches: the median ratio serves)."""
    from scipy.stats import theilslopes

    ok = np.isfinite(log_batch) & np.isfinite(log_ratio)
    log_batch, log_ratio = log_batch[ok], log_ratio[ok]
    if np.unique(log_batch).size < 2:
        return None
    with np.errstate(invalid="ignore"):  # its confidence interval (unused) takes a square root of 0 - rounding
        slope, intercept, _, _ = theilslopes(log_ratio, log_batch)
    return float(log_batch.min()), float(log_batch.max()), float(intercept), float(slope)


def _groups(levels: list[tuple[str, Any]], mask: np.ndarray) -> list[tuple[tuple[str, str], np.ndarray]]:
    """(level name, value) -> rows among ``mask`` with that value, for every level."""
    out = []
    for name, values in levels:
        values = np.asarray(values, dtype=object)
        for value in np.unique(values[mask]):
            out.append(((name, str(value)), mask & (values == value)))
    return out
