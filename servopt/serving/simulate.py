"""Discrete-event simulation of a serving plan under a request trace.

Requests arrive as a Poisson process whose rate follows a per-second trace (each second's count is Poisson with the
trace's rate, arrival times uniform within the second). A :class:`SimulatedDeployment` is a series of stages; each stage is
one or more :class:`ServerPool` s in parallel, and each request is routed to one pool per stage at random with the
stage's routing weights. A pool is ``replicas`` identical servers behind one FIFO queue with Triton-style dynamic
batching: a free server takes up to ``batch_size`` queued requests as soon as the batch is full or the oldest
request has waited ``max_queue_delay_s``; a batch of ``k`` requests runs for ``latency(k)`` seconds (deterministic,
from the performance source). A request not yet started when its age reaches the drop deadline (by default the
SLO) is dropped. Plans change over time through a schedule of ``(start_s, SimulatedDeployment)`` pairs; see
:func:`simulate_schedule` and ``docs/simulator.md`` for the semantics of a reconfiguration.

Speed: the event loop runs once per *batch*, not per request; pools with batch size 1 (InfAdapter's CPU
deployments) skip the loop entirely: with identical deterministic service times a FIFO multi-server queue is
``replicas`` interleaved Lindley recursions, ``S_i = max(A_i, S_{i-c} + D)``, computed with
``numpy.maximum.accumulate``. ``benchmarks/bench_simulate.py`` measures the speed.

Plans of the ``variant_selection`` and ``pipeline`` formulations become deployments with
:func:`deployment_from_plan`; it, :class:`ServerPool` and :class:`SimulatedDeployment` live in :mod:`servopt.serving.deployment`
and are re-exported here.

>>> import numpy as np
>>> pool = ServerPool("m", latency_s=0.01)
>>> rep = simulate(SimulatedDeployment.parallel([pool], slo_ms=100), np.full(60, 50.0), seed=1, timeout_ms=None)
>>> rep.dropped, rep.slo_violation_rate
(0, 0.0)
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from heapq import heapreplace
from typing import Any

import numpy as np

from servopt.serving.deployment import SimulatedDeployment, ServerPool, deployment_from_plan
from servopt.exceptions import ValidationError
from servopt.serving.traces import Trace, as_trace

__all__ = [
    "ServerPool",
    "SimulatedDeployment",
    "SimulationReport",
    "simulate",
    "simulate_schedule",
    "poisson_arrivals",
    "deployment_from_plan",
]

@dataclass(frozen=True, eq=False)
class SimulationReport:
    """What happened to every request. ``to_dict()`` is the JSON of ``servopt simulate --json``.

    Latencies are end-to-end (arrival at the first stage to completion of the last); ``slo_violation_rate`` counts
    requests slower than the SLO plus dropped requests, over all requests; ``average_accuracy`` averages the
    accuracy of the served requests; ``core_seconds`` integrates the cores held over the trace.
    """

    requests: int
    served: int
    dropped: int
    mean_ms: float
    p50_ms: float
    p99_ms: float
    slo_violation_rate: float
    average_accuracy: float
    core_seconds: float
    slo_ms: float
    duration_s: float
    wall_seconds: float
    arrival_s: np.ndarray = field(repr=False)
    latency_s: np.ndarray = field(repr=False)  # NaN where dropped
    accuracy: np.ndarray = field(repr=False)  # NaN where dropped

    def to_dict(self) -> dict[str, Any]:
        """``{"mean_ms", "p50_ms", "p99_ms", "slo_violation_rate", "served", "dropped", "average_accuracy",
        "core_seconds"}``; undefined values (nothing served) are ``None``."""
        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "mean_ms": num(self.mean_ms),
            "p50_ms": num(self.p50_ms),
            "p99_ms": num(self.p99_ms),
            "slo_violation_rate": num(self.slo_violation_rate),
            "served": int(self.served),
            "dropped": int(self.dropped),
            "average_accuracy": num(self.average_accuracy),
            "core_seconds": float(self.core_seconds),
        }

    def per_interval(self, interval_s: float) -> dict[str, np.ndarray]:
        """Metrics per interval of arrival time: ``start_s``, ``requests``, ``violations`` (rate), ``p99_ms``,
        ``accuracy`` (mean over served)."""
        n_int = max(1, int(math.ceil(self.duration_s / interval_s)))
        k = np.minimum((self.arrival_s // interval_s).astype(np.int64), n_int - 1)
        lat = self.latency_s
        bad = np.isnan(lat) | (lat * 1000.0 > self.slo_ms)
        requests = np.bincount(k, minlength=n_int)
        viol = np.bincount(k, weights=bad, minlength=n_int)
        ok = ~np.isnan(lat)
        served = np.bincount(k[ok], minlength=n_int)
        acc_sum = np.bincount(k[ok], weights=self.accuracy[ok], minlength=n_int)
        p99 = np.full(n_int, np.nan)
        order = np.argsort(k[ok], kind="stable")
        chunks = np.split(lat[ok][order], np.cumsum(served)[:-1])
        for i, chunk in enumerate(chunks):
            if chunk.size:
                p99[i] = np.percentile(chunk, 99) * 1000.0
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "start_s": np.arange(n_int) * float(interval_s),
                "requests": requests,
                "violations": np.where(requests > 0, viol / np.maximum(requests, 1), 0.0),
                "p99_ms": p99,
                "accuracy": acc_sum / served,
            }


#: the most requests one simulation draws (each costs about 100 bytes across the simulator's arrays)
MAX_REQUESTS = 20_000_000


def poisson_arrivals(rps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted arrival times (s) of a Poisson process whose rate in second ``k`` is ``rps[k]``.

    Refuses, before drawing anything, a trace whose expected number of requests exceeds :data:`MAX_REQUESTS`.
    """
    rates = np.asarray(rps, dtype=float)
    expected = float(rates.sum())
    if not expected <= MAX_REQUESTS:
        raise ValidationError(
            f"the trace asks for about {expected:.3g} requests over {rates.size:,} s (peak {rates.max():.3g} RPS); "
            f"servopt simulates at most {MAX_REQUESTS:,} requests per run (about 2 GB); lower the trace's rates "
            "(--damping F divides them by F) or simulate a shorter slice (--trace-start, --trace-end)"
        )
    counts = rng.poisson(rates)
    t = np.repeat(np.arange(counts.size, dtype=float), counts)
    t += rng.random(t.size)
    t.sort()
    return t


def simulate(
    target: Any,
    trace: Any,
    *,
    problem: Any = None,
    slo_ms: float | None = None,
    seed: int | None = 0,
    timeout_ms: float | str | None = "slo",
    **plan_options: Any,
) -> SimulationReport:
    """Simulate a plan serving a trace.

    Parameters
    ----------
    target : SimulatedDeployment, problem, Solution or plan
        A :class:`SimulatedDeployment`; a ``variant_selection`` or ``pipeline`` problem (solved first with
        :func:`servopt.solve`); or a solution / plan of such a problem (then ``problem=`` is required).
    trace : Trace, path or sequence of float
        Request rate per second (see :mod:`servopt.serving.traces`).
    problem : optional
        The problem a plan belongs to (its performance tables give the service times).
    slo_ms : float, optional
        Latency SLO; defaults to the deployment's (a pipeline's ``sla_ms``).
    seed : int, optional
        Seed of the arrivals and of the routing.
    timeout_ms : float, "slo" or None
        Drop a request not yet started by a stage when its age exceeds this many ms; ``"slo"`` (default) uses the
        SLO, ``None`` never drops.
    **plan_options
        Passed to :func:`deployment_from_plan` (e.g. ``headroom``, ``servers``).

    Returns
    -------
    SimulationReport
    """
    dep = _as_deployment(target, problem, dict(plan_options, slo_ms=slo_ms) if not isinstance(target, SimulatedDeployment)
                         else plan_options)
    return simulate_schedule([(0.0, dep)], trace, slo_ms=slo_ms, seed=seed, timeout_ms=timeout_ms)


def simulate_schedule(
    schedule: Sequence[tuple[float, SimulatedDeployment]],
    trace: Any,
    *,
    slo_ms: float | None = None,
    seed: int | np.random.Generator | None = 0,
    timeout_ms: float | str | None = "slo",
    arrivals: np.ndarray | None = None,
) -> SimulationReport:
    """Simulate deployments that change over time.

    ``schedule`` lists ``(start_s, deployment)`` pairs in increasing time, the first at 0. A request is served by
    the deployment in force when it arrives (make-before-break): a pool that is identical in consecutive entries
    keeps its queue and busy servers; a pool that changes starts empty and idle, while the old one drains what it
    has queued. All deployments must have the same number of stages. ``arrivals`` (sorted seconds) replaces the
    Poisson arrivals drawn from the trace. ``seed`` seeds :func:`numpy.random.default_rng`, which draws the
    arrivals (unless given) and then the routing; a ``Generator`` is used as it is, continuing its stream (pass
    the generator that drew ``arrivals`` so that the routing draws are not a replay of the arrival draws).
    """
    t0 = time.perf_counter()
    tr: Trace = as_trace(trace)
    if not schedule:
        raise ValidationError("the schedule is empty; give at least one (start_s, deployment)")
    starts = np.array([float(s) for s, _ in schedule])
    deps = [d for _, d in schedule]
    if starts[0] != 0.0 or np.any(np.diff(starts) <= 0):
        raise ValidationError(f"schedule start times must begin at 0 and increase, got {starts.tolist()}")
    if any(not isinstance(d, SimulatedDeployment) for d in deps):
        raise ValidationError("every schedule entry must be (start_s, SimulatedDeployment)")
    n_stages = len(deps[0].stages)
    if any(len(d.stages) != n_stages for d in deps):
        raise ValidationError("all deployments of a schedule must have the same number of stages")
    slo = slo_ms if slo_ms is not None else deps[0].slo_ms
    if slo is None or not (math.isfinite(slo) and slo > 0):
        raise ValidationError("no latency SLO: pass slo_ms= (or --slo-ms) or use a deployment that has one")
    if timeout_ms == "slo":
        timeout_s: float | None = slo / 1000.0
    elif timeout_ms is None:
        timeout_s = None
    else:
        timeout_s = float(timeout_ms) / 1000.0
        if not timeout_s > 0:
            raise ValidationError(f"timeout_ms must be > 0, 'slo' or None, got {timeout_ms!r}")
    rng = np.random.default_rng(seed)
    if arrivals is None:
        arrivals = poisson_arrivals(tr.rps, rng)
    duration = float(tr.duration_s)
    seg_end = np.append(starts[1:], max(duration, starts[-1]))
    core_seconds = float(sum(d.cores * max(0.0, e - s) for d, s, e in zip(deps, starts, seg_end)))
    finish, acc = _run(deps, starts, arrivals, rng, timeout_s)
    lat = finish - arrivals
    ok = ~np.isnan(lat)
    served = int(ok.sum())
    n = int(arrivals.size)
    lat_ok = lat[ok]
    if served:
        mean_ms = float(lat_ok.mean() * 1000.0)
        p50, p99 = (float(v) * 1000.0 for v in np.percentile(lat_ok, [50, 99]))
        avg_acc = float(np.mean(acc[ok]))
    else:
        mean_ms = p50 = p99 = avg_acc = float("nan")
    violations = (n - served) + int(np.count_nonzero(lat_ok * 1000.0 > slo))
    return SimulationReport(
        requests=n, served=served, dropped=n - served, mean_ms=mean_ms, p50_ms=p50, p99_ms=p99,
        slo_violation_rate=violations / n if n else float("nan"), average_accuracy=avg_acc,
        core_seconds=core_seconds, slo_ms=float(slo), duration_s=duration,
        wall_seconds=time.perf_counter() - t0, arrival_s=arrivals, latency_s=lat,
        accuracy=np.where(ok, acc, np.nan),
    )


def _run(deps: list[SimulatedDeployment], starts: np.ndarray, arrivals: np.ndarray, rng: np.random.Generator,
         timeout_s: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Finish time (NaN if dropped) and accuracy of every request."""
    n = arrivals.size
    now = arrivals.copy()
    deadline = arrivals + timeout_s if timeout_s is not None else None
    seg_bounds = np.searchsorted(arrivals, starts, side="left").tolist() + [n]
    mode = deps[0].accuracy
    acc = np.zeros(n) if mode in ("average", "sum") else np.ones(n)
    for s in range(len(deps[0].stages)):
        run_of = _pool_runs([d.stages[s] for d in deps])
        rid = np.empty(n, dtype=np.int64)
        u = rng.random(n)
        pool_acc = np.empty(n)
        for k, dep in enumerate(deps):
            lo, hi = seg_bounds[k], seg_bounds[k + 1]
            if lo == hi:
                continue
            w = np.cumsum(dep.weights[s])
            choice = np.minimum(np.searchsorted(w / w[-1], u[lo:hi], side="right"), len(w) - 1)
            rid[lo:hi] = np.asarray(run_of[k])[choice]
            pool_acc[lo:hi] = np.array([p.accuracy for p in dep.stages[s]])[choice]
        rid[np.isnan(now)] = -1
        pools = {r: pool for k, dep in enumerate(deps) for pool, r in zip(dep.stages[s], run_of[k])}
        order = np.lexsort((now, rid))  # by run, then by arrival at this stage
        sorted_rid = rid[order]
        cuts = np.flatnonzero(np.diff(sorted_rid)) + 1
        for idx in np.split(order, cuts):
            if idx.size == 0 or rid[idx[0]] < 0:
                continue
            _, fin = _serve(now[idx], None if deadline is None else deadline[idx], pools[int(rid[idx[0]])])
            now[idx] = fin
        if mode == "product":
            acc *= pool_acc
        else:
            acc += pool_acc
    if mode == "average":
        acc /= len(deps[0].stages)
    return now, acc


def _pool_runs(stage_per_segment: list[tuple[ServerPool, ...]]) -> list[list[int]]:
    """Run id of every pool of every segment: a pool identical to one of the previous segment continues it."""
    runs: list[list[int]] = []
    next_id = 0
    for k, pools in enumerate(stage_per_segment):
        ids: list[int] = []
        prev = list(zip(stage_per_segment[k - 1], runs[k - 1])) if k else []
        taken: set[int] = set()
        for pool in pools:
            match = next((r for p, r in prev if r not in taken and p == pool), None)
            if match is None:
                match, next_id = next_id, next_id + 1
            taken.add(match)
            ids.append(match)
        runs.append(ids)
    return runs


def _serve(t: np.ndarray, deadline: np.ndarray | None, pool: ServerPool) -> tuple[np.ndarray, np.ndarray]:
    """Start and finish times (NaN if dropped) of requests arriving at ``t`` (sorted) at one pool."""
    lat = pool.batch_latencies()
    if pool.batch_size == 1:
        start = _lindley(t, float(lat[1]), int(pool.replicas))
        if deadline is None or not np.any(start > deadline):
            return start, start + lat[1]
    start, finish, _ = _serve_batches(t, deadline, int(pool.batch_size), float(pool.max_queue_delay_s), lat,
                                      int(pool.replicas))
    return start, finish


def _lindley(t: np.ndarray, service_s: float, replicas: int) -> np.ndarray:
    """FIFO start times with ``replicas`` servers and a constant service time: S_i = max(A_i, S_{i-c} + D)."""
    start = np.empty_like(t)
    for r in range(min(replicas, t.size)):
        a = t[r::replicas]
        offset = np.arange(a.size) * service_s
        start[r::replicas] = offset + np.maximum.accumulate(a - offset)
    return start


def _serve_batches(t: np.ndarray, deadline: np.ndarray | None, batch: int, delay: float, lat: np.ndarray,
                   replicas: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The event loop, once per batch: a free server takes up to ``batch`` requests when the batch is full or the
    oldest has waited ``delay``; requests whose deadline passes before a server is free are dropped.

    Returns start and finish times (NaN if dropped) and the batch number of every request (-1 if dropped)."""
    n = t.size
    times = t.tolist()
    dl = deadline.tolist() if deadline is not None else None
    latl = lat.tolist()
    free = [-math.inf] * replicas  # a heap of the times servers become free
    b_start: list[float] = []
    b_fin: list[float] = []
    b_lo: list[int] = []
    b_hi: list[int] = []
    inf = math.inf
    head = 0
    while head < n:
        t_free = free[0]
        if dl is not None:
            while head < n and dl[head] < t_free:
                head += 1
            if head >= n:
                break
        last = head + batch - 1
        full_at = times[last] if last < n else inf
        ts = times[head] + delay
        if full_at < ts:
            ts = full_at
        if t_free > ts:
            ts = t_free
        hi = bisect_right(times, ts, head, min(n, head + batch))
        fin = ts + latl[hi - head]
        heapreplace(free, fin)
        b_start.append(ts)
        b_fin.append(fin)
        b_lo.append(head)
        b_hi.append(hi)
        head = hi
    start = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    batch_of = np.full(n, -1, dtype=np.int64)
    if b_lo:
        lo = np.asarray(b_lo)
        counts = np.asarray(b_hi) - lo
        # served requests are the union of the batch ranges [lo, hi), in order
        idx = np.repeat(lo - np.concatenate(([0], np.cumsum(counts)[:-1])), counts) + np.arange(counts.sum())
        start[idx] = np.repeat(b_start, counts)
        finish[idx] = np.repeat(b_fin, counts)
        batch_of[idx] = np.repeat(np.arange(lo.size), counts)
    if deadline is not None:
        late = start > deadline  # NaN compares False
        start[late] = np.nan
        finish[late] = np.nan
        batch_of[late] = -1
    return start, finish, batch_of


def _as_deployment(target: Any, problem: Any, options: dict[str, Any]) -> SimulatedDeployment:
    if isinstance(target, SimulatedDeployment):
        if options:
            raise ValidationError(f"options {', '.join(options)} apply to plans, not to a SimulatedDeployment")
        return target
    if hasattr(target, "build") and hasattr(target, "kind"):  # a problem: solve it
        from servopt.solve import solve

        solution = solve(target)
        if solution.plan is None:
            raise ValidationError(f"the {target.kind} problem has no plan to simulate ({solution.status.value}): "
                                  f"{solution.message}")
        return deployment_from_plan(target, solution.plan, **options)
    if problem is None:
        raise ValidationError("simulating a plan or a solution needs its problem: pass problem=")
    plan = getattr(target, "plan", target)
    if plan is None:
        raise ValidationError("the solution has no plan to simulate")
    return deployment_from_plan(problem, plan, **options)
