"""The report of a rate-driven verify run (pipeline, variant_selection, trace replay): table, JSON, PNG.

Built by :func:`analyze`; ``holds`` decides ``servopt verify``'s exit code (0, or
:data:`servopt.serving.verify.EXIT_PLAN_FAILED`), with the rule described in :mod:`servopt.serving.verify_rate`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError
from servopt.serving.verify_drive import RateRun, ServerCounters
from servopt.serving.verify_rate import RatePlan, StageCheck, Summary, summarize

__all__ = ["WindowRow", "RateReport", "analyze"]


@dataclass(frozen=True)
class WindowRow:
    """One window of a trace replay: the rate the trace offered in it and what the client measured."""

    label: str
    offered_rps: float
    measured: Summary

    def holds(self, slo_ms: float | None, tolerance: float) -> bool:
        return self.measured.holds(slo_ms, tolerance)


def _ms(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return "inf" if math.isinf(x) else f"{x:.1f}"


def _frac(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _pct(x: float) -> str:
    return f"{x:+.0%}" if math.isfinite(x) else "-"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]


@dataclass
class RateReport:
    """Predicted against measured for a rate-driven plan; ``holds`` is the verdict."""

    plan: RatePlan
    tolerance: float
    total: Summary
    checks: list[StageCheck]
    windows: list[WindowRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trace: str | None = None
    #: the mean rate asked for (requests/s): the plan's x rate scale, or the replayed trace's mean
    offered_rps: float | None = None

    @property
    def offered(self) -> float:
        return self.plan.offered_rps if self.offered_rps is None else self.offered_rps

    @property
    def problem(self) -> str:
        return self.plan.problem

    @property
    def end_to_end_holds(self) -> bool:
        return self.total.sent > 0 and self.total.holds(self.plan.slo_ms, self.tolerance)

    @property
    def holds(self) -> bool:
        """End to end, every model, and every trace window (a window above the planned rate too: the plan is
        checked against the trace it is to serve; the ``x plan`` column tells which windows ask for more)."""
        return (self.end_to_end_holds and all(c.holds for c in self.checks)
                and all(w.holds(self.plan.slo_ms, self.tolerance) for w in self.windows))

    def to_dict(self) -> dict[str, Any]:
        p = self.plan
        return {"problem": p.problem, "tolerance": self.tolerance, "holds": self.holds, "trace": self.trace,
                "plan": {"workload_rps": p.workload_rps, "rate_scale": p.rate_scale, "offered_rps": p.offered_rps,
                         "targets": {m: w / sum(p.weights) for m, w in zip(p.targets, p.weights)},
                         "request_batch": p.request_batch, "slo_ms": p.slo_ms,
                         "predicted_latency_ms": p.predicted_latency_ms, "asked_rps": self.offered},
                "end_to_end": {**asdict(self.total), "holds": self.end_to_end_holds},
                "models": [c.to_dict() for c in self.checks],
                "windows": [{"label": w.label, "offered_rps": w.offered_rps, **asdict(w.measured),
                             "holds": w.holds(p.slo_ms, self.tolerance)} for w in self.windows],
                "notes": self.notes}

    def to_table(self) -> str:
        p, t = self.plan, self.total
        head = ("model", "inst", "batch", "offered/s", "meas/s", "pred batch ms", "meas batch ms", "err",
                "queue ms", "srv batch", "pred cap/s", "meas cap/s", "p50", "p99", "over_slo", "holds")
        rows = [head]
        for c in self.checks:
            e = c.expected
            client = c.client
            rows.append((f"{e.model} [{e.label}]", str(e.instances), str(e.batch_size), f"{c.offered_rps:.1f}",
                         f"{c.throughput_rps:.1f}", _ms(e.batch_latency_ms), _ms(c.batch_latency_ms),
                         _pct(c.batch_latency_error), _ms(c.queue_ms), f"{c.batch_avg:.2f}",
                         f"{e.capacity_rps:.1f}", _ms(c.capacity_rps),
                         _ms(client.latency_p50_ms) if client else "-", _ms(client.latency_p99_ms) if client else "-",
                         _frac(client.over_slo) if client else "-", "yes" if c.holds else "NO"))
        lines = _table(rows)
        slo = "no SLO (give --slo-ms)" if p.slo_ms is None else f"SLO {p.slo_ms:g} ms"
        pred = "" if p.predicted_latency_ms is None else f"; predicted latency {p.predicted_latency_ms:.1f} ms"
        served = "" if p.instance_scale == 1 else f" x {p.instance_scale:.3g} for the instances served"
        asked = (f"{self.offered:.1f}/s (trace mean x {p.rate_scale:g}{served})" if self.trace else
                 f"{p.offered_rps:g}/s (plan {p.workload_rps:g} x {p.rate_scale:g}{served})")
        shares = ", ".join(f"{m} x{w / sum(p.weights):.2f}" for m, w in zip(p.targets, p.weights))
        lines.append(f"end to end ({shares}): offered "
                     f"{asked}, sent {t.sent_rps:.1f}/s, "
                     f"measured {t.throughput_rps:.1f}/s; p50 {_ms(t.latency_p50_ms)} ms, p99 "
                     f"{_ms(t.latency_p99_ms)} ms{pred}; {slo}, over_slo {_frac(t.over_slo)}; {t.sent} requests, "
                     f"{t.failed} failed; {'holds' if self.end_to_end_holds else 'does NOT hold'}")
        for c in self.checks:
            if c.expected.batch_slo_ms is not None:
                met = {True: "met", False: "MISSED", None: "not measured"}[c.batch_slo_met]
                lines.append(f"SLO {c.expected.model}: batch latency {_ms(c.batch_latency_ms)} ms, bound "
                             f"{c.expected.batch_slo_ms * (1 + self.tolerance):.1f} ms (latency_slo_ms "
                             f"{c.expected.batch_slo_ms:g} x {1 + self.tolerance:g}): {met}; the plan's SLO bounds "
                             "the batch latency L(b) (a request latency objective: --slo-ms)")
        if self.windows:
            rows = [("window", "offered/s", "x plan", "sent/s", "meas/s", "p50", "p99", "over_slo", "holds")]
            for w in self.windows:
                m = w.measured
                rows.append((w.label, f"{w.offered_rps:.1f}", f"{w.offered_rps / p.offered_rps:.2f}",
                             f"{m.sent_rps:.1f}", f"{m.throughput_rps:.1f}",
                             _ms(m.latency_p50_ms), _ms(m.latency_p99_ms), _frac(m.over_slo),
                             "yes" if w.holds(p.slo_ms, self.tolerance) else "NO"))
            lines += [f"trace {self.trace}:"] + _table(rows)
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"plan {'holds' if self.holds else 'does NOT hold'} within {self.tolerance:.0%}")
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Per model predicted and measured batch latency and capacity; per trace window offered, measured and
        p99 (when a trace was replayed). A PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = 3 if self.windows else 2
        fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
        from servopt.serving.verify import bar_pairs, save_verdict_figure

        bar_pairs(axes, [c.expected.model for c in self.checks], [
            ("batch latency (ms)", [c.expected.batch_latency_ms or math.nan for c in self.checks],
             [c.batch_latency_ms for c in self.checks]),
            ("capacity (items/s)", [c.expected.capacity_rps for c in self.checks],
             [c.capacity_rps for c in self.checks])])
        if self.windows:
            ax = axes[2]
            k = range(len(self.windows))
            ax.plot(k, [w.offered_rps for w in self.windows], label="offered/s")
            ax.plot(k, [w.measured.throughput_rps for w in self.windows], label="measured/s")
            ax.set_xlabel("trace window")
            ax.set_title("trace replay")
            p99 = ax.twinx()
            p99.plot(k, [w.measured.latency_p99_ms for w in self.windows], "k:", label="p99 ms")
            p99.set_ylabel("p99 ms (dotted); SLO (red)")
            if self.plan.slo_ms is not None:
                p99.axhline(self.plan.slo_ms, color="r", lw=0.8)
            ax.legend(loc="upper left")
        return save_verdict_figure(fig, path, self.problem, self.holds, self.tolerance)


def analyze(plan: RatePlan, run: RateRun, *, tolerance: float = 0.25,
            windows: list[tuple[str, float, float, float]] | None = None, trace: str | None = None) -> RateReport:
    """The :class:`RateReport` of ``run`` against ``plan``.

    ``windows``: ``(label, wall start, wall end, offered rps)`` per trace window (a trace replay), reported
    one by one; the verdict covers the whole measured span."""
    if not (0 < tolerance < 1):
        raise ValidationError(f"tolerance: expected a fraction between 0 and 1 such as 0.25, got {tolerance}")
    a, b = run.measure_from, run.measure_to
    k = plan.request_batch
    total = summarize(run, a, b, slo_ms=plan.slo_ms, batch=k)
    index = {m: i for i, m in enumerate(run.targets)}
    checks = []
    for s in plan.stages:
        direct = s.model in index
        client = summarize(run, a, b, slo_ms=plan.slo_ms, target=index[s.model], batch=k) if direct else None
        offered = client.sent_rps if client is not None else total.sent_rps
        checks.append(StageCheck(expected=s, counters=run.counters.get(s.model, ServerCounters()), span_s=b - a,
                                 offered_rps=offered, client=client, slo_ms=plan.slo_ms, tolerance=tolerance))
    rows = [WindowRow(label, offered, summarize(run, lo, hi, slo_ms=plan.slo_ms, batch=k))
            for label, lo, hi, offered in (windows or [])]
    notes = list(run.errors)
    for s in plan.stages:
        if s.instances < s.planned_instances:
            notes.append(f"{s.model}: {s.instances} of {s.planned_instances} planned instances served; its "
                         f"capacity and the rate sent to it are scaled ({s.capacity_rps:.1f}/s, {s.load_rps:.1f}/s)")
    if plan.instance_scale != 1:
        chained = any(s.model not in plan.targets for s in plan.stages)  # stages behind an ensemble
        how = ("the smallest served / planned instances of the stages, which all see the whole rate"
               if chained else "each model's served / planned instances")
        notes.append(f"rates are the plan's x {plan.instance_scale:.3g} for the instances served (--max-instances: "
                     f"{how})")
    if plan.rate_scale != 1:
        notes.append(f"rates are the plan's x {plan.rate_scale:g} (--rate-scale)")
    return RateReport(plan=plan, tolerance=tolerance, total=total, checks=checks, windows=rows, notes=notes,
                      trace=trace)
