"""Verify a rate-driven plan (pipeline, variant_selection) on Triton: what the plan expects, and the verdict.

``servopt solve --out`` writes, for these plans, ``predictions.models`` (``PipelinePlan.predictions()``,
``VariantSelectionPlan.predictions()``): per served model its instances, planned batch and batch latency, its
capacity (``throughput_rps``) and the rate it should receive (``load_rps``). :func:`rate_plan` turns that into a
:class:`RatePlan`: the models a client sends to (the pipeline's ensemble; the selected variants, split by the
weights of ``routing.json``), the rate (``workload_rps`` x ``rate_scale``) and one :class:`StageExpectation` per
served model. :func:`servopt.serving.verify_report.analyze` compares a
:class:`~servopt.serving.verify_drive.RateRun` (an open-loop Poisson replay) with it and returns a
:class:`~servopt.serving.verify_report.RateReport`.

**Verdict** (tolerance ``t``, default 0.25, as for GPU plans): end to end, the measured throughput is at least
(1 - t) x the rate actually sent and the p99 latency at most (1 + t) x the SLO (the pipeline's ``sla_ms``, or
``--slo-ms``); per served model, its throughput carries (1 - t) x the rate sent to it, its batch latency
(Triton's compute time per request, from the statistics API: an ensemble's composing models are measured
inside the ensemble) is at most (1 + t) x the planned one, and for variants (driven directly) its own p99 is
within the SLO the same way. A trace replay (``--trace``) must also hold in every window of the trace (its
throughput carries what was sent in it, its p99 within the SLO), windows above the planned rate included: the
plan is checked against the load it is to serve. The capacity each model shows (instances x batch formed x 1000 / batch latency) is
reported next to the planned capacity but is not part of the verdict: at a rate below capacity the batcher
forms smaller batches than planned, so it understates the capacity.

**Fewer instances than planned** (``--max-instances``): each model's capacity is scaled to its served / planned
instances, and so is the rate sent (``RatePlan.instance_scale``), so no model gets more than its planned share of
its scaled capacity: a pipeline's rate x the smallest served / planned of its stages (every stage sees the whole
rate), each variant's rate x its own (routing weights scaled likewise), a GPU plan's x its served / planned
throughput. A trace replay scales the trace's rates the same way.

**GPU plans replayed from a trace**: their ``latency_slo_ms`` bounds the batch latency (``servopt solve`` offers
only batches with L(b) <= SLO), so it is judged per model on the batch latency (``StageExpectation.batch_slo_ms``),
within (1 + t); a request latency objective for them is ``--slo-ms``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servopt.exceptions import ValidationError
from servopt.serving.verify_drive import RateRun, ServerCounters

__all__ = ["StageExpectation", "RatePlan", "Summary", "StageCheck", "rate_plan", "gpu_rate_plan", "summarize",
           "percentile", "is_rate_driven"]


def is_rate_driven(summary: dict[str, Any]) -> bool:
    """True for plans whose predictions are per served model and a request rate (``predictions.models``:
    pipeline and variant_selection plans), False for GPU plans (``groups``, ``placements``)."""
    return "models" in summary.get("predictions", {})


@dataclass(frozen=True)
class StageExpectation:
    """What the plan expects of one served model (a pipeline stage, or a selected variant).

    ``capacity_rps`` and ``load_rps`` are items per second, scaled to the instances served and to the rate
    scale; ``batch_latency_ms`` is None when the plan has none (a variant without capacity)."""

    model: str
    label: str
    instances: int
    planned_instances: int
    batch_size: int
    batch_latency_ms: float | None
    capacity_rps: float
    queue_delay_ms: float
    latency_ms: float | None
    load_rps: float
    #: GPU plans: the latency SLO the plan's batch latency was chosen under (L(b) <= SLO), judged on the measured
    #: batch latency; None: no such bound
    batch_slo_ms: float | None = None


@dataclass(frozen=True)
class RatePlan:
    """The load a rate-driven plan was made for and what it predicts.

    Attributes
    ----------
    problem : str
        ``pipeline`` or ``variant_selection``.
    workload_rps : float
        The planned request rate (before ``rate_scale``).
    rate_scale : float
        Multiplies every planned rate (``--rate-scale``).
    targets, weights : tuple
        The models clients send to and their shares of the requests.
    stages : tuple of StageExpectation
        One per served model (ensembles excluded).
    slo_ms : float or None
        End-to-end latency objective (pipeline ``sla_ms``, or ``--slo-ms``); None: no SLO check.
    predicted_latency_ms : float or None
        The plan's end-to-end latency (pipeline: sum of batch latencies and queue delays).
    """

    problem: str
    workload_rps: float
    rate_scale: float
    targets: tuple[str, ...]
    weights: tuple[float, ...]
    stages: tuple[StageExpectation, ...]
    slo_ms: float | None
    predicted_latency_ms: float | None
    #: items per request (GPU plans replayed from a trace: the planned batch, or 1 with single images)
    request_batch: int = 1
    #: the repository the plan's models are in (a path in servopt.json)
    repository: str = "."
    #: GPU plans: the dynamic batcher's delay the plan asks for (``--queue-delay plan``)
    queue_delay_us: int | None = None
    #: served / planned instances as the rate sees it (``--max-instances``; 1: every planned instance served): the
    #: planned rate is scaled by it so no model gets more than its share of its scaled capacity
    instance_scale: float = 1.0

    @property
    def offered_rps(self) -> float:
        return self.workload_rps * self.rate_scale * self.instance_scale

    def standin_timings(self) -> dict[str, tuple[float, float]]:
        """``--standin plan``: model -> (0, batch latency / batch): each stand-in takes its planned latency."""
        return {s.model: (0.0, s.batch_latency_ms / s.batch_size) for s in self.stages
                if s.batch_latency_ms is not None}


def _served(cfg: Path, planned: int, cap: int | None) -> tuple[int, int]:
    from servopt.serving.verify import _instances

    if not cfg.is_file():
        return planned, planned
    return _instances(cfg), _instances(cfg, cap)


def _one_repository(summary: dict[str, Any]) -> dict[str, Any]:
    repos = summary.get("repositories") or []
    if len(repos) != 1:
        raise ValidationError(f"servopt.json: a {summary.get('problem')} plan is served by one repository, found "
                              f"{len(repos)}")
    return repos[0]


def _routing_weights(repo_dir: Path, repo: dict[str, Any]) -> dict[str, float] | None:
    for path in (repo_dir / repo["path"] / "routing.json", repo_dir / "routing.json"):
        if path.is_file():
            try:
                routes = json.loads(path.read_text())["routes"]
                return {str(r["model"]): float(r["weight"]) for r in routes}
            except (KeyError, TypeError, ValueError) as exc:
                raise ValidationError(f"{path}: expected {{'routes': [{{'model', 'weight'}}, ...]}} ({exc})") from None
    return None


def rate_plan(summary: dict[str, Any], repo_dir: str | Path, *, rate_scale: float = 1.0,
              slo_ms: float | None = None, served_instances: int | None = None) -> RatePlan:
    """The :class:`RatePlan` of a pipeline or variant_selection ``servopt.json`` (``repo_dir`` holds it)."""
    problem = str(summary.get("problem"))
    if not is_rate_driven(summary):
        raise ValidationError(f"servopt.json: problem {problem!r} has no predictions.models (a request rate per "
                              "served model, as pipeline and variant_selection plans carry)")
    if not (rate_scale > 0 and math.isfinite(rate_scale)):
        raise ValidationError(f"--rate-scale: expected a number > 0, got {rate_scale}")
    if slo_ms is not None and not (slo_ms > 0 and math.isfinite(slo_ms)):
        raise ValidationError(f"--slo-ms: expected milliseconds > 0, got {slo_ms}")
    repo_dir = Path(repo_dir)
    pred = summary["predictions"]
    repo = _one_repository(summary)
    chain = any("stage" in p for p in pred["models"])  # a pipeline's stages, else the selected variants
    key = "stage" if chain else "variant"
    names = {m[key]: m["name"] for m in repo["models"] if key in m}
    counts: dict[str, tuple[int, int]] = {}  # model -> (planned, served) instances
    for p in pred["models"]:
        if p.get(key) not in names:
            raise ValidationError(f"servopt.json: predicted {key} {p.get(key)!r} is not a model of repository "
                                  f"{repo['path']!r} (models: {', '.join(names.values()) or 'none'})")
        name = names[p[key]]
        counts[name] = _served(repo_dir / repo["path"] / name / "config.pbtxt", int(p["model_instances"]),
                               served_instances)
    served_of = {name: served / max(1, planned) for name, (planned, served) in counts.items()}
    # the rate is scaled like the capacities: a pipeline's stages all see the whole rate (the smallest ratio
    # keeps every stage within its planned share); each variant gets its own ratio of its planned rate
    scale = min(served_of.values(), default=1.0) if chain else None
    stages = []
    for p in pred["models"]:
        name = names[p[key]]
        planned, served = counts[name]
        per_instance = float(p["throughput_rps"]) / max(1, int(p["model_instances"]))
        label = p[key] if p.get("variant") in (None, p[key]) else f"{p[key]} ({p['variant']})"
        latency = p.get("latency_ms", p.get("batch_latency_ms"))
        stages.append(StageExpectation(
            model=name, label=label, instances=served, planned_instances=planned, batch_size=int(p["batch_size"]),
            batch_latency_ms=None if p.get("batch_latency_ms") is None else float(p["batch_latency_ms"]),
            capacity_rps=per_instance * served, queue_delay_ms=float(p.get("queue_delay_ms") or 0.0),
            latency_ms=None if latency is None else float(latency),
            load_rps=float(p["load_rps"]) * rate_scale * (scale if chain else served_of[name])))
    if chain:
        entry = repo.get("entry") or (stages[0].model if len(stages) == 1 else None)
        if entry is None:
            raise ValidationError(f"servopt.json: pipeline repository {repo['path']!r} has no entry (ensemble)")
        targets, weights = (entry,), (1.0,)
        slo = slo_ms if slo_ms is not None else pred.get("sla_ms")
        predicted = pred.get("latency_ms")
        instance_scale = scale
    else:
        routing = _routing_weights(repo_dir, repo)
        shares = {names[p["variant"]]: float(p["share"]) for p in pred["models"]}
        weights_by_model = routing if routing is not None else shares
        unknown = sorted(set(weights_by_model) - set(shares))
        if unknown:
            raise ValidationError(f"routing.json: routes to {', '.join(unknown)}, which the plan does not serve")
        targets = tuple(m for m in shares if weights_by_model.get(m, 0.0) > 0)
        if not targets:
            raise ValidationError("servopt.json: the plan routes no requests to any variant")
        planned_weights = [weights_by_model[m] for m in targets]
        weights = tuple(w * served_of[m] for w, m in zip(planned_weights, targets))
        instance_scale = sum(weights) / sum(planned_weights)
        slo, predicted = slo_ms, None
    return RatePlan(problem=problem, workload_rps=float(pred["workload_rps"]), rate_scale=rate_scale,
                    targets=targets, weights=weights, stages=tuple(stages),
                    slo_ms=None if slo is None else float(slo), predicted_latency_ms=predicted,
                    repository=repo["path"], instance_scale=instance_scale)


def gpu_rate_plan(summary: dict[str, Any], repo_dir: str | Path, *, rate_scale: float = 1.0,
                  slo_ms: float | None = None, served_instances: int | None = None,
                  single_images: bool = False) -> RatePlan:
    """A min_gpus or max_throughput plan as a rate-driven one (``verify --trace``): one repository's models,
    requests split by their predicted throughput, each of the planned batch (``single_images``: of 1 item);
    rates are items per second, the planned one the repository's predicted throughput (x served / planned
    instances: ``instance_scale``). The plan's ``latency_slo_ms`` bounds each model's batch latency
    (``batch_slo_ms``); ``slo_ms`` (``--slo-ms``) is a request latency objective."""
    from servopt.serving.verify import expectations

    if "groups" not in summary["predictions"] or len(summary.get("repositories") or []) != 1:
        raise ValidationError(f"servopt.json: a {summary.get('problem')} plan is replayed from a trace one "
                              f"repository (one server) at a time; this one has "
                              f"{len(summary.get('repositories') or [])} (fleet plans: give DIR/<repository>)")
    if not (rate_scale > 0 and math.isfinite(rate_scale)):
        raise ValidationError(f"--rate-scale: expected a number > 0, got {rate_scale}")
    if slo_ms is not None and not (slo_ms > 0 and math.isfinite(slo_ms)):
        raise ValidationError(f"--slo-ms: expected milliseconds > 0, got {slo_ms}")
    exp = expectations(summary, repo_dir, served_instances=served_instances)
    stages = tuple(StageExpectation(
        model=e.model, label=e.hardware, instances=e.instances, planned_instances=e.planned_instances,
        batch_size=e.batch_size, batch_latency_ms=e.batch_latency_ms, capacity_rps=e.throughput_rps,
        queue_delay_ms=e.queue_delay_ms, latency_ms=e.latency_ms, load_rps=e.throughput_rps * rate_scale,
        batch_slo_ms=e.latency_slo_ms) for e in exp)
    served = sum(e.throughput_rps for e in exp)  # expectations scale throughputs to the served instances
    planned = sum(e.throughput_rps * e.planned_instances / max(1, e.instances) for e in exp)
    return RatePlan(problem=str(summary.get("problem")), workload_rps=planned,
                    rate_scale=rate_scale, targets=tuple(e.model for e in exp),
                    weights=tuple(e.throughput_rps for e in exp), stages=stages,
                    slo_ms=slo_ms, predicted_latency_ms=exp[0].latency_ms,
                    request_batch=1 if single_images else exp[0].batch_size,
                    repository=summary["repositories"][0]["path"], queue_delay_us=exp[0].max_queue_delay_us,
                    instance_scale=served / planned if planned > 0 else 1.0)


def percentile(values: np.ndarray, q: float) -> float:
    """Nearest-rank percentile (``inf`` entries, failed requests, count as the slowest); NaN when empty.

    >>> percentile(np.array([1.0, 2.0, 3.0, np.inf]), 50), percentile(np.array([1.0, 2.0, 3.0, np.inf]), 99)
    (2.0, inf)
    """
    if values.size == 0:
        return math.nan
    ordered = np.sort(values)
    return float(ordered[max(0, math.ceil(q / 100.0 * values.size) - 1)])


@dataclass(frozen=True)
class Summary:
    """Client-side numbers of the requests sent in one span (to one model, or to all).

    ``sent_rps`` and ``throughput_rps`` are items per second: requests sent within the span, and answers that
    came within it, over its length; latencies in ms of the requests sent within it (a failed request counts as
    infinitely slow); ``over_slo``: the fraction of them slower than the SLO or failed (None without an SLO)."""

    sent: int
    completed: int
    failed: int
    sent_rps: float
    throughput_rps: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_mean_ms: float
    over_slo: float | None

    def holds(self, slo_ms: float | None, tolerance: float) -> bool:
        ok = self.throughput_rps >= (1 - tolerance) * self.sent_rps
        if slo_ms is not None and self.sent:  # a span with no request (a trace at 0/s) has no latency to judge
            ok = ok and self.latency_p99_ms <= slo_ms * (1 + tolerance)
        return ok


def summarize(run: RateRun, start: float, end: float, *, slo_ms: float | None, target: int | None = None,
              batch: int = 1) -> Summary:
    """:class:`Summary` of the requests of ``run`` sent within ``[start, end)`` (to ``target`` when given)."""
    span = end - start
    if span <= 0:
        raise ValidationError(f"summarize: empty span [{start}, {end})")
    chosen = np.ones(run.sent_s.size, bool) if target is None else run.target == target
    sent = chosen & (run.sent_s >= start) & (run.sent_s < end)
    answered = chosen & (run.done_s >= start) & (run.done_s < end)
    lat = np.where(np.isnan(run.latency_s[sent]), np.inf, run.latency_s[sent] * 1000.0)
    finite = lat[np.isfinite(lat)]
    over = None if slo_ms is None or lat.size == 0 else float(np.mean(lat > slo_ms))
    return Summary(sent=int(sent.sum()), completed=int(finite.size), failed=int(lat.size - finite.size),
                   sent_rps=float(sent.sum()) * batch / span, throughput_rps=float(answered.sum()) * batch / span,
                   latency_p50_ms=percentile(lat, 50), latency_p99_ms=percentile(lat, 99),
                   latency_mean_ms=float(finite.mean()) if finite.size else math.nan, over_slo=over)


@dataclass(frozen=True)
class StageCheck:
    """Predicted against measured for one served model over the measured span.

    ``counters`` are Triton's over the span; ``offered_rps`` the items sent to this model per second (every
    pipeline stage sees the whole rate); ``client`` the client-side numbers when the model is driven directly
    (variants), else None."""

    expected: StageExpectation
    counters: ServerCounters
    span_s: float
    offered_rps: float
    client: Summary | None
    slo_ms: float | None
    tolerance: float

    @property
    def throughput_rps(self) -> float:
        return self.counters.inferences / self.span_s

    @property
    def batch_latency_ms(self) -> float:
        c = self.counters
        return c.compute_ns / c.success / 1e6 if c.success else math.nan

    @property
    def queue_ms(self) -> float:
        c = self.counters
        return c.queue_ns / c.success / 1e6 if c.success else math.nan

    @property
    def batch_avg(self) -> float:
        c = self.counters
        return c.inferences / c.executions if c.executions else math.nan

    @property
    def capacity_rps(self) -> float:
        """Instances x the batch the server formed x 1000 / its batch latency (items/s)."""
        b = self.batch_latency_ms
        return self.expected.instances * self.batch_avg * 1000.0 / b if b > 0 else math.nan

    @property
    def batch_latency_error(self) -> float:
        e = self.expected.batch_latency_ms
        return self.batch_latency_ms / e - 1.0 if e else math.nan

    @property
    def batch_slo_met(self) -> bool | None:
        """GPU plans: the batch latency within (1 + tolerance) x the SLO it was planned under (None: no such SLO,
        or no batch measured)."""
        slo = self.expected.batch_slo_ms
        if slo is None or not math.isfinite(self.batch_latency_ms):
            return None
        return self.batch_latency_ms <= slo * (1 + self.tolerance)

    @property
    def holds(self) -> bool:
        ok = self.throughput_rps >= (1 - self.tolerance) * self.offered_rps
        if math.isfinite(self.batch_latency_error):
            ok = ok and self.batch_latency_error <= self.tolerance
        if self.client is not None and self.slo_ms is not None:
            ok = ok and self.client.latency_p99_ms <= self.slo_ms * (1 + self.tolerance)
        return ok and self.batch_slo_met is not False

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"expected": asdict(self.expected), "offered_rps": self.offered_rps,
                "throughput_rps": self.throughput_rps, "batch_latency_ms": self.batch_latency_ms,
                "batch_latency_error": self.batch_latency_error, "queue_ms": self.queue_ms,
                "batch_avg": self.batch_avg, "capacity_rps": self.capacity_rps, "batch_slo_met": self.batch_slo_met,
                "client": None if self.client is None else asdict(self.client), "holds": self.holds}
