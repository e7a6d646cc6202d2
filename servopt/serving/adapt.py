"""Adaptation loop for schedulers: forecast the load, re-plan, keep the deployment stable.

An :class:`Adapter` holds the current plan of a ``variant_selection`` or ``pipeline`` problem. Every few seconds
the scheduler calls :meth:`Adapter.step` with the observed per-second load (or :meth:`Adapter.decide` with its
own forecast); the adapter re-solves the problem for the forecast with the chosen policy (servopt's exact solver
or a baseline of :mod:`servopt.policies`) and returns a :class:`Decision` with the next plan,
whether the deployment changed, why, and how long the decision took.

Stabilisation, as InfAdapter does it (``docs/replay.md``):

* ``scale_down_delay_s``: a forecast below the load the current plan serves is acted on only once forecasts have
  stayed below it for this long (InfAdapter skips up to 4 decisions of 30 s: 120 s); scale-up is immediate. Any
  forecast at or above the planned load, even one ``min_change`` keeps, restarts the wait.
* ``min_change``: a forecast within this relative distance of the planned load keeps the current plan.

Forecasters (no deep-learning dependency) are callables ``history -> rps`` on the per-second load observed so far:
:class:`LastValue`, :class:`EWMA` (optionally over per-bucket maxima, InfAdapter's per-minute EWM), :class:`WindowMax`
(IPA's backup predictor) or any user function, each with an optional safety ``margin`` (InfAdapter adds 10 %).

>>> import numpy as np
>>> EWMA(span=3)(np.array([10.0, 10.0, 40.0])) > 20
True
>>> WindowMax(window_s=2, margin=0.1)(np.array([50.0, 30.0, 20.0]))
33.0
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servopt.exceptions import ValidationError
from servopt.formulations.pipeline.types import PipelinePlan
from servopt.formulations.variant_selection.types import VariantSelectionPlan
from servopt.serving.deployment import servable

__all__ = [
    "Adapter",
    "Decision",
    "LastValue",
    "EWMA",
    "WindowMax",
    "FunctionForecaster",
    "make_forecaster",
    "POLICIES",
    "MIN_RPS",
    "ReplayResult",
    "replay",
]

#: policy names an Adapter accepts: servopt's solver, the baselines of servopt.policies, static
POLICIES = ("servopt", "ms+", "greedy", "fa2", "rim", "bruteforce", "static")

_KINDS = ("variant_selection", "pipeline")

#: forecasts below this are planned for it (problems need a positive load)
MIN_RPS = 1.0


def _check_history(history: Any) -> np.ndarray:
    h = np.asarray(history, dtype=float)
    if h.ndim != 1 or h.size == 0:
        raise ValidationError("a forecaster needs a non-empty one-dimensional load history (RPS per second)")
    return h


def _check_margin(margin: float) -> None:
    if not (math.isfinite(margin) and margin > -1):
        raise ValidationError(f"forecast margin must be a finite number > -1 (0.1 = +10 %), got {margin!r}")


@dataclass(frozen=True)
class LastValue:
    """Reactive forecast: the load of the last second (times ``1 + margin``)."""

    margin: float = 0.0

    def __call__(self, history: Any) -> float:
        _check_margin(self.margin)
        return float(_check_history(history)[-1]) * (1.0 + self.margin)


@dataclass(frozen=True)
class EWMA:
    """Exponentially weighted moving average with ``alpha = 2 / (span + 1)`` (pandas ``ewm(span).mean()``,
    ``adjust=True``), over per-second loads or, with ``bucket_s``, over the maxima of buckets of that many seconds
    (InfAdapter: per-minute maxima, span 10, margin 0.1)."""

    span: float = 10.0
    bucket_s: int = 1
    margin: float = 0.0

    def __call__(self, history: Any) -> float:
        _check_margin(self.margin)
        if not (math.isfinite(self.span) and self.span >= 1):
            raise ValidationError(f"EWMA span must be a number >= 1, got {self.span!r}")
        h = _bucket_max(_check_history(history), self.bucket_s)
        alpha = 2.0 / (self.span + 1.0)
        w = (1.0 - alpha) ** np.arange(h.size - 1, -1, -1, dtype=float)
        return float(np.dot(w, h) / w.sum()) * (1.0 + self.margin)


@dataclass(frozen=True)
class WindowMax:
    """The largest per-second load of the last ``window_s`` seconds (IPA's ``max`` predictor over 2 minutes)."""

    window_s: int = 120
    margin: float = 0.0

    def __call__(self, history: Any) -> float:
        _check_margin(self.margin)
        if isinstance(self.window_s, bool) or not isinstance(self.window_s, (int, np.integer)) or self.window_s < 1:
            raise ValidationError(f"WindowMax window_s must be an integer >= 1, got {self.window_s!r}")
        return float(_check_history(history)[-int(self.window_s):].max()) * (1.0 + self.margin)


@dataclass(frozen=True)
class FunctionForecaster:
    """Any user function ``history (numpy array, RPS per second) -> forecast RPS``, checked on every call."""

    function: Callable[[np.ndarray], float]
    margin: float = 0.0

    def __call__(self, history: Any) -> float:
        _check_margin(self.margin)
        value = self.function(_check_history(history))
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValidationError(f"the forecaster {self.function!r} returned {value!r}, expected a number") from None
        if not (math.isfinite(f) and f >= 0):
            raise ValidationError(f"the forecaster {self.function!r} returned {f!r}; expected a finite number >= 0")
        return f * (1.0 + self.margin)


def _bucket_max(h: np.ndarray, bucket_s: int) -> np.ndarray:
    if isinstance(bucket_s, bool) or not isinstance(bucket_s, (int, np.integer)) or bucket_s < 1:
        raise ValidationError(f"bucket_s must be an integer >= 1, got {bucket_s!r}")
    if bucket_s == 1:
        return h
    pad = (-h.size) % bucket_s  # the last, partial bucket counts too
    padded = np.concatenate((np.full(pad, -np.inf), h)) if pad else h
    return padded.reshape(-1, bucket_s).max(axis=1)


def make_forecaster(spec: Any = "last", *, window_s: int = 120, span: float = 10.0, bucket_s: int = 1,
                    margin: float = 0.0) -> Callable[[np.ndarray], float]:
    """A forecaster from a name (``last``, ``ewma``, ``max``), a forecaster object or any callable."""
    if isinstance(spec, (LastValue, EWMA, WindowMax, FunctionForecaster)):
        return spec
    if isinstance(spec, str):
        if spec == "last":
            return LastValue(margin=margin)
        if spec == "ewma":
            return EWMA(span=span, bucket_s=bucket_s, margin=margin)
        if spec == "max":
            return WindowMax(window_s=window_s, margin=margin)
        raise ValidationError(f"unknown forecaster {spec!r}; expected last, ewma, max or a callable")
    if callable(spec):
        return FunctionForecaster(spec, margin=margin)
    raise ValidationError(f"a forecaster must be last, ewma, max or a callable, got {type(spec).__name__}")


@dataclass(frozen=True)
class Decision:
    """One decision of an :class:`Adapter`.

    ``action`` is ``initial``, ``replan`` (solved; ``changed`` says whether the deployment differs),
    ``keep-min-change``, ``keep-scale-down-delay``, ``keep-no-forecast`` or ``keep-static``; ``planned_rps`` is
    the load the plan serves (lower than ``forecast_rps`` when the forecast was infeasible and the adapter planned
    for the largest load it could serve); ``seconds`` is the wall time of the decision, solves included.
    """

    time_s: float
    forecast_rps: float
    planned_rps: float
    plan: Any
    changed: bool
    action: str
    status: str
    seconds: float
    solves: int = 0
    message: str = ""


@dataclass
class Adapter:
    """Re-plans a ``variant_selection`` or ``pipeline`` problem for each new load forecast.

    Parameters
    ----------
    problem : VariantSelection or Pipeline
        The problem whose inputs other than the load stay fixed; re-planning uses
        ``problem.update(workload_rps=..., current=plan)``.
    policy : str
        ``servopt`` (exact, :func:`servopt.solve`), a baseline name of :func:`servopt.run_policy` (``ms+``,
        ``greedy``, ``fa2``, ``rim``, ``bruteforce``), or ``static`` (the first plan is kept for ever).
    forecaster : str or callable
        See :func:`make_forecaster`; used by :meth:`step`.
    backend : str
        Solver backend of the ``servopt`` policy.
    scale_down_delay_s, min_change : float
        Stabilisation (see the module docstring).
    prefer_stable : bool
        Ask the problem to prefer the current deployment among equally good plans.
    policy_options : Mapping, optional
        Options of a baseline policy (``run_policy(..., options=)``), e.g. ``{"variants": "highest"}`` for
        IPA's FA2-high.
    current : plan, optional
        The running deployment's plan; the first decision replaces it only if the rules allow.
    current_rps : float, optional
        The load ``current`` was planned for (needed with ``current``).

    Examples
    --------
    >>> adapter = Adapter(problem, policy="servopt", scale_down_delay_s=120)   # doctest: +SKIP
    >>> decision = adapter.step(observed_rps_per_second, now=30.0)             # doctest: +SKIP
    >>> decision.plan.to_dict(), adapter.stats()                                # doctest: +SKIP
    """

    problem: Any
    policy: str = "servopt"
    forecaster: Any = "last"
    backend: str = "auto"
    scale_down_delay_s: float = 0.0
    min_change: float = 0.0
    prefer_stable: bool = False
    policy_options: Any = None
    current: Any = None
    current_rps: float | None = None
    decisions: list[Decision] = field(default_factory=list, init=False, repr=False)
    _down_since: float | None = field(default=None, init=False, repr=False)
    _forecast_fn: Callable[[np.ndarray], float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not servable(self.problem):
            kind = getattr(self.problem, "kind", None)
            raise ValidationError(f"an Adapter re-plans {' or '.join(_KINDS)} problems, got {kind!r}")
        if self.policy not in POLICIES:
            raise ValidationError(f"unknown policy {self.policy!r}; expected one of {', '.join(POLICIES)}")
        if not (math.isfinite(self.scale_down_delay_s) and self.scale_down_delay_s >= 0):
            raise ValidationError(f"scale_down_delay_s must be a number >= 0, got {self.scale_down_delay_s!r}")
        if not (math.isfinite(self.min_change) and 0 <= self.min_change < 1):
            raise ValidationError(f"min_change must be a fraction in [0, 1), got {self.min_change!r}")
        if self.policy_options is not None and self.policy in ("servopt", "static"):
            raise ValidationError(f"policy_options apply to baseline policies, not to {self.policy!r}")
        if (self.current is None) != (self.current_rps is None):
            raise ValidationError("give current and current_rps together (the plan and the load it serves)")
        self._forecast_fn = make_forecaster(self.forecaster)

    # -- the loop -------------------------------------------------------------------------------------------------
    def step(self, history: Any, now: float | None = None) -> Decision:
        """Forecast from ``history`` (observed RPS per second, oldest first) and :meth:`decide`."""
        h = np.asarray(history, dtype=float)
        if h.size == 0:
            return self._record(now, math.nan, self.current_rps or math.nan, self.current, False,
                                "keep-no-forecast", "keep", 0.0)
        return self.decide(self._forecast_fn(h), now=now)

    def decide(self, forecast_rps: float, now: float | None = None) -> Decision:
        """The next plan for a load forecast, after the stabilisation rules."""
        t0 = time.perf_counter()
        f = float(forecast_rps)
        if not (math.isfinite(f) and f >= 0):
            raise ValidationError(f"forecast_rps must be a finite number >= 0, got {forecast_rps!r}")
        now = float(now) if now is not None else time.monotonic()
        cur = self.current_rps
        if self.current is not None and cur is not None:
            if self.policy == "static":
                return self._record(now, f, cur, self.current, False, "keep-static", "keep", t0)
            # the scale-down clock runs while forecasts stay below the planned load, whatever the decision
            # (a forecast at or above it, even one kept by min_change, restarts the wait)
            if f >= cur:
                self._down_since = None
            elif self._down_since is None:
                self._down_since = now
            if self.min_change > 0 and abs(f - cur) <= self.min_change * cur:
                return self._record(now, f, cur, self.current, False, "keep-min-change", "keep", t0)
            if self._down_since is not None and self.scale_down_delay_s > 0:
                if now - self._down_since < self.scale_down_delay_s:
                    return self._record(now, f, cur, self.current, False, "keep-scale-down-delay", "keep", t0)
        status, plan, planned, solves, message = self._plan(f)
        if plan is None:  # nothing servable at all: keep what runs
            return self._record(now, f, cur if cur is not None else math.nan, self.current, False, "replan",
                                status, t0, solves, message)
        changed = self.current is None or _config(plan) != _config(self.current)
        action = "initial" if self.current is None else "replan"
        self.current, self.current_rps, self._down_since = plan, planned, None
        return self._record(now, f, planned, plan, changed, action, status, t0, solves, message)

    def stats(self) -> dict[str, float]:
        """Decisions, reconfigurations, solves, and decision time (mean, p50, p95, max; milliseconds)."""
        secs = np.array([d.seconds for d in self.decisions]) * 1000.0
        solved = np.array([d.seconds for d in self.decisions if d.solves]) * 1000.0

        def q(a: np.ndarray, p: float) -> float:
            return float(np.percentile(a, p)) if a.size else math.nan

        return {
            "decisions": len(self.decisions),
            "reconfigurations": sum(d.changed and d.action != "initial" for d in self.decisions),
            "solves": sum(d.solves for d in self.decisions),
            "mean_ms": float(secs.mean()) if secs.size else math.nan,
            "p50_ms": q(secs, 50),
            "p95_ms": q(secs, 95),
            "max_ms": float(secs.max()) if secs.size else math.nan,
            "mean_solve_decision_ms": float(solved.mean()) if solved.size else math.nan,
        }

    # -- internals ------------------------------------------------------------------------------------------------
    def _record(self, now: float | None, f: float, planned: float, plan: Any, changed: bool, action: str,
                status: str, t0: float, solves: int = 0, message: str = "") -> Decision:
        elapsed = time.perf_counter() - t0 if t0 else 0.0
        d = Decision(time_s=now if now is not None else math.nan, forecast_rps=f, planned_rps=planned, plan=plan,
                     changed=changed, action=action, status=status, seconds=elapsed, solves=solves,
                     message=message)
        self.decisions.append(d)
        return d

    def _solve(self, rps: float) -> tuple[str, Any, str]:
        """(status, plan or None, message) of the policy at load ``rps``."""
        kwargs: dict[str, Any] = {"workload_rps": rps, "current": self.current}
        if self.prefer_stable:
            kwargs["prefer_stable"] = True
        problem = self.problem.update(**kwargs)
        if self.policy in ("servopt", "static"):
            from servopt.solve import solve

            sol = solve(problem, self.backend)
        else:
            from servopt.policies import run_policy

            sol = run_policy(problem, self.policy, options=self.policy_options)
        return sol.status.value, sol.plan, sol.message

    def _plan(self, f: float) -> tuple[str, Any, float, int, str]:
        """Plan for ``f``; if infeasible, plan for the largest servable load instead (the problem's exact
        ``max_servable()`` when it has one, else bisection to within 1 %)."""
        f = max(f, MIN_RPS)
        status, plan, message = self._solve(f)
        if plan is not None:
            return status, plan, f, 1, message
        solves, best = 1, None
        top = getattr(self.problem, "max_servable", None)
        candidates = [float(top()[0]) * (1.0 - 1e-9)] if callable(top) else []
        candidates.append(MIN_RPS)
        for load in candidates:
            if MIN_RPS <= load < f:
                st, p, _ = self._solve(load)
                solves += 1
                if p is not None:
                    best = (st, p, load)
                    break
        if best is not None and best[2] == MIN_RPS:  # bisect between MIN_RPS (servable) and f (not)
            lo, hi = MIN_RPS, f
            while hi - lo > 0.01 * hi and solves < 20:
                mid = 0.5 * (lo + hi)
                st, p, _ = self._solve(mid)
                solves += 1
                if p is not None:
                    lo, best = mid, (st, p, mid)
                else:
                    hi = mid
        if best is None:
            return status, None, math.nan, solves, message
        st, p, load = best
        return st, p, load, solves, f"{message} (planned for {load:.1f} RPS, the largest servable load)"


@functools.singledispatch
def _config(plan: Any) -> Any:
    """What must be deployed for a plan (loads and routing shares excluded): equal configs need no change."""
    raise ValidationError(f"an Adapter re-plans {' or '.join(_KINDS)} plans, got {type(plan).__name__}")


@_config.register
def _(plan: VariantSelectionPlan) -> Any:
    return tuple(sorted((v.name, float(v.cores)) for v in plan.variants if float(v.cores) > 0))


@_config.register
def _(plan: PipelinePlan) -> Any:
    return tuple((s.name, s.variant, int(s.batch_size), int(s.replicas)) for s in plan.stages)


@functools.singledispatch
def _load_times(plan: Any, problem: Any) -> dict[Any, float]:
    """Seconds to load each element of ``_config(plan)`` from nothing (``replay(apply_delay="load")``)."""
    raise ValidationError(f"an Adapter re-plans {' or '.join(_KINDS)} plans, got {type(plan).__name__}")


@_load_times.register
def _(plan: VariantSelectionPlan, problem: Any) -> dict[Any, float]:
    seconds = {v.name: float(v.load_time_s) for v in problem.variants}
    return {(name, cores): seconds[name] for name, cores in _config(plan)}


@_load_times.register
def _(plan: PipelinePlan, problem: Any) -> dict[Any, float]:
    return dict.fromkeys(_config(plan), 0.0)  # the pipeline formulation has no loading times


# ---------------------------------------------------------------------------------------------------- replay
@dataclass(frozen=True, eq=False)
class ReplayResult:
    """A policy replayed along a trace: the simulation of the whole run, every decision and the schedule."""

    policy: str
    interval_s: float
    report: Any  # servopt.simulate.SimulationReport
    decisions: tuple[Decision, ...]
    schedule: tuple[tuple[float, Any], ...]
    stats: dict[str, float]

    def summary(self) -> dict[str, Any]:
        """One row per policy: SLO violations, latency, accuracy, cost, reconfigurations, decision time, and the
        mean objective of the plan in force at each decision (valued at the load it was planned for)."""
        r = self.report
        d = r.to_dict()
        return {
            "policy": self.policy,
            "requests": r.requests,
            **d,
            "mean_cores": r.core_seconds / r.duration_s if r.duration_s else math.nan,
            "mean_objective": float(np.mean([d.plan.objective for d in self.decisions if d.plan is not None])),
            "reconfigurations": int(self.stats["reconfigurations"]),
            "decisions": int(self.stats["decisions"]),
            "decision_mean_ms": self.stats["mean_ms"],
            "decision_max_ms": self.stats["max_ms"],
        }

    def series(self) -> dict[str, np.ndarray]:
        """Per decision interval: start, observed load (mean RPS over the interval's seconds; the last interval
        may be shorter), forecast, planned cores, SLO-violation rate, p99 latency and accuracy of the requests that
        arrived in it."""
        per = self.report.per_interval(self.interval_s)
        n = per["start_s"].size
        forecast = np.full(n, np.nan)
        for dec in self.decisions:
            k = int(dec.time_s // self.interval_s)
            if 0 <= k < n:
                forecast[k] = dec.forecast_rps
        cores = np.zeros(n)
        starts = np.array([s for s, _ in self.schedule])
        for k, t in enumerate(per["start_s"]):
            cores[k] = self.schedule[int(np.searchsorted(starts, t, side="right")) - 1][1].cores
        # the last interval may be cut short by the end of the trace: its mean rate is over the seconds it has
        length = np.minimum(self.interval_s, self.report.duration_s - per["start_s"])
        return {**per, "observed_rps": per["requests"] / length, "forecast_rps": forecast, "cores": cores}


def replay(
    problem: Any,
    trace: Any,
    *,
    policy: str = "servopt",
    interval_s: float = 30.0,
    forecaster: Any = "last",
    seed: int | None = 0,
    slo_ms: float | None = None,
    timeout_ms: float | str | None = "slo",
    scale_down_delay_s: float = 0.0,
    min_change: float = 0.0,
    prefer_stable: bool = False,
    backend: str = "auto",
    static_rps: float | str = "max",
    apply_delay: float | str = 0.0,
    policy_options: Any = None,
    label: str | None = None,
    **plan_options: Any,
) -> ReplayResult:
    """Re-plan every ``interval_s`` from a forecast of the observed load and simulate between decisions.

    Arrivals are drawn once from the trace (same ``seed``: the same requests for every policy), and the
    simulation's routing draws continue the same random stream, exactly as :func:`simulate_schedule` does with
    that seed; the load a decision at time t sees is the count of requests per second before t. The first plan
    (t = 0) is made for the forecast of the trace's first second; the ``static`` policy plans once for
    ``static_rps`` (``max``: the trace's peak, ``mean``, or a number) and never changes.

    A new plan serves the requests that arrive from its start, the previous deployment serving until then
    (make-before-break). The start is the decision time plus ``apply_delay`` seconds, or with ``"load"`` the time
    every (variant, cores) of the plan is loaded: one the live deployment or a pending rollout also runs keeps its
    load time (already loaded, or loading for a rollout not yet live), any other loads from the decision time for
    the variant's ``load_time_s`` (when the previous plan is live this is the plan's ``loading_cost_s``); the
    models of a superseded rollout that the live deployment does not run count as unloaded. A newer plan
    supersedes any rollout that would go live at or after its own start: that rollout never serves, so the
    schedule holds the latest plan the adapter decided, and a pending rollout serves only if it is loaded before
    the newer one. See :func:`servopt.simulate.simulate_schedule`. ``policy_options`` go to the baseline policy;
    ``label`` names the result (default: the policy).
    """
    from servopt.serving.simulate import deployment_from_plan, poisson_arrivals, simulate_schedule
    from servopt.serving.traces import as_trace

    tr = as_trace(trace)
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValidationError(f"interval_s must be a number > 0, got {interval_s!r}")
    if isinstance(apply_delay, str) and apply_delay != "load":
        raise ValidationError(f"apply_delay must be seconds >= 0 or 'load', got {apply_delay!r}")
    if not isinstance(apply_delay, str) and not (math.isfinite(apply_delay) and apply_delay >= 0):
        raise ValidationError(f"apply_delay must be seconds >= 0 or 'load', got {apply_delay!r}")
    if getattr(problem, "sla_ms", None) is None:  # no SLO of its own (variant_selection): the deployment takes ours
        plan_options = dict(plan_options, slo_ms=slo_ms)
    rng = np.random.default_rng(seed)  # one stream: the arrivals, then the routing draws of the simulation
    arrivals = poisson_arrivals(tr.rps, rng)
    duration = tr.duration_s
    observed = np.bincount(np.minimum(arrivals.astype(np.int64), duration - 1), minlength=duration).astype(float)
    adapter = Adapter(problem, policy=policy, forecaster=forecaster, backend=backend,
                      scale_down_delay_s=scale_down_delay_s, min_change=min_change, prefer_stable=prefer_stable,
                      policy_options=policy_options)
    if policy == "static":
        f0 = _static_load(static_rps, tr.rps)
        first = adapter.decide(f0, now=0.0)
    else:
        first = adapter.decide(adapter._forecast_fn(tr.rps[:1]), now=0.0)
    if first.plan is None:
        raise ValidationError(f"no plan for the initial load {first.forecast_rps:.1f} RPS ({first.status}): "
                              f"{first.message}")
    schedule: list[tuple[float, Any]] = [(0.0, deployment_from_plan(problem, first.plan, **plan_options))]
    plan = first.plan
    # (start, when each (model, size) of its plan is (or will be) loaded) per rollout not superseded, the schedule's
    # entries plus any that would go live after the trace; starts strictly increase
    rollouts: list[tuple[float, dict[Any, float]]] = [(0.0, dict.fromkeys(_config(plan), 0.0))]
    t = float(interval_s)
    while t < duration:
        dec = adapter.step(observed[: int(t)], now=t)
        if dec.plan is not None and dec.plan is not plan:
            if isinstance(apply_delay, str):  # "load": live once every model it runs at its size is loaded
                live = max(i for i, (s, _) in enumerate(rollouts) if s <= t)
                loaded: dict[Any, float] = {}  # the live deployment's models and the pending rollouts'
                for _, units in rollouts[live:]:
                    for u, at in units.items():
                        loaded[u] = min(at, loaded.get(u, math.inf))
                load_s = _load_times(dec.plan, problem)
                ready = {u: loaded[u] if u in loaded else t + load_s[u] for u in _config(dec.plan)}
                start = max(t, *ready.values())
            else:
                ready, start = {}, t + float(apply_delay)
            # a rollout that would go live no earlier than this newer one never goes live: superseded
            while len(rollouts) > 1 and rollouts[-1][0] >= start:
                rollouts.pop()
            while len(schedule) > 1 and schedule[-1][0] >= start:
                schedule.pop()
            rollouts.append((start, ready))
            if start < duration:
                schedule.append((start, deployment_from_plan(problem, dec.plan, **plan_options)))
            plan = dec.plan
        t += interval_s
    report = simulate_schedule(schedule, tr, slo_ms=slo_ms, seed=rng, timeout_ms=timeout_ms, arrivals=arrivals)
    return ReplayResult(policy=label or policy, interval_s=float(interval_s), report=report,
                        decisions=tuple(adapter.decisions), schedule=tuple(schedule), stats=adapter.stats())


def _static_load(spec: float | str, rps: np.ndarray) -> float:
    if spec == "max":
        return float(rps.max())
    if spec == "mean":
        return float(rps.mean())
    try:
        value = float(spec)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValidationError(f"static_rps must be max, mean or a number > 0, got {spec!r}")
    return value
