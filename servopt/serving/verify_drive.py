"""Open-loop replay of given arrival times against a Triton server, with the server's per-model statistics.

``servopt verify`` for rate-driven plans (pipeline, variant_selection, and any plan replayed from a trace): every
request is sent at its arrival time (a Poisson process, :func:`servopt.serving.traces.poisson_arrivals`) to one
of several served models, chosen per request by weight, and never waits for the others (open loop). The run
returns every request's send time, target and latency (:class:`RateRun`), and the difference of Triton's
statistics (``get_inference_statistics``) of every named model over the measured span ``[measure_from,
measure_to)``: for an ensemble, its composing models' queue and compute times, so each pipeline stage is measured
without being driven on its own.

At most ``max_outstanding`` requests are in flight; beyond that the replay stops (the server cannot keep up) and
the requests not sent count as failed. Only 127.0.0.1 URLs are accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servopt.exceptions import ValidationError

__all__ = ["ServerCounters", "RateRun", "replay", "counters_of"]


@dataclass(frozen=True)
class ServerCounters:
    """Triton's cumulative counters of one model (or their difference over a span)."""

    success: float = 0.0
    queue_ns: float = 0.0
    compute_ns: float = 0.0
    executions: float = 0.0
    inferences: float = 0.0

    def __sub__(self, other: ServerCounters) -> ServerCounters:
        return ServerCounters(*(a - b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def as_tuple(self) -> tuple[float, ...]:
        return (self.success, self.queue_ns, self.compute_ns, self.executions, self.inferences)


def counters_of(raw: dict[str, Any], model: str) -> ServerCounters:
    """The counters of ``model`` in ``get_inference_statistics(as_json=True)`` (zeros when absent).

    >>> raw = {"model_stats": [{"name": "m", "execution_count": "2", "inference_count": "4", "inference_stats": {
    ...     "success": {"count": "4"}, "queue": {"ns": "8"}, "compute_infer": {"ns": "40"}}}]}
    >>> counters_of(raw, "m")
    ServerCounters(success=4.0, queue_ns=8.0, compute_ns=40.0, executions=2.0, inferences=4.0)
    """
    values = [0.0] * 5
    for stat in raw.get("model_stats", []):
        if stat.get("name") != model:
            continue
        inf = stat.get("inference_stats", {})
        values[0] += float(inf.get("success", {}).get("count", 0))
        values[1] += float(inf.get("queue", {}).get("ns", 0))
        values[2] += sum(float(inf.get(p, {}).get("ns", 0)) for p in ("compute_input", "compute_infer",
                                                                      "compute_output"))
        values[3] += float(stat.get("execution_count", 0))
        values[4] += float(stat.get("inference_count", 0))
    return ServerCounters(*values)


@dataclass
class RateRun:
    """What one replay measured.

    Attributes
    ----------
    sent_s, latency_s : numpy.ndarray
        Per request: its arrival time (seconds from the start of the replay) and its latency, NaN when it failed,
        timed out or was never sent.
    target : numpy.ndarray
        Per request: the index of the model it went to (in ``targets``).
    done_s : numpy.ndarray
        Per request: when its answer came (NaN if none).
    targets : list of str
        The models requests were sent to.
    measure_from, measure_to : float
        The measured span (the seconds before ``measure_from`` are the warm-up).
    counters : dict
        Model name -> :class:`ServerCounters` over the measured span.
    errors : list of str
        The first few failures (type and message).
    """

    sent_s: np.ndarray
    latency_s: np.ndarray
    done_s: np.ndarray
    target: np.ndarray
    targets: list[str]
    measure_from: float
    measure_to: float
    counters: dict[str, ServerCounters]
    errors: list[str] = field(default_factory=list)

    @property
    def span_s(self) -> float:
        return self.measure_to - self.measure_from

    def measured(self) -> np.ndarray:
        """Mask of the requests sent within the measured span."""
        return (self.sent_s >= self.measure_from) & (self.sent_s < self.measure_to)


def replay(url: str, targets: Sequence[str], weights: Sequence[float], batch_sizes: Sequence[int],
           arrivals: np.ndarray, *, measure_from: float, measure_to: float, stats_models: Sequence[str],
           seed: int = 0, request_timeout_s: float = 30.0, max_outstanding: int = 2048) -> RateRun:
    """Send one request per arrival time, each to a target drawn by ``weights``, and measure.

    Parameters
    ----------
    url : str
        gRPC endpoint on this machine (``127.0.0.1:PORT``).
    targets, weights, batch_sizes : sequences
        The models requests go to, their shares of the requests (normalised) and each one's request batch size.
    arrivals : numpy.ndarray
        Sorted arrival times, seconds from the start.
    measure_from, measure_to : float
        The measured span; Triton's counters of ``stats_models`` are read at both ends.
    """
    from servopt.measure.loadgen import check_local_url

    url = check_local_url(url)
    if not targets or len(targets) != len(weights) or len(targets) != len(batch_sizes):
        raise ValidationError(f"replay: one weight and batch size per target, got {len(targets)} targets, "
                              f"{len(weights)} weights, {len(batch_sizes)} batch sizes")
    w = np.asarray(weights, dtype=float)
    if not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
        raise ValidationError(f"replay: weights must be >= 0 with a positive sum, got {list(weights)}")
    if not (0 <= measure_from < measure_to):
        raise ValidationError(f"replay: need 0 <= measure_from < measure_to, got {measure_from}, {measure_to}")
    arrivals = np.asarray(arrivals, dtype=float)
    choice = np.random.default_rng(seed + 1).choice(len(targets), size=arrivals.size, p=w / w.sum())
    return asyncio.run(_replay(url, list(targets), list(batch_sizes), arrivals, choice, measure_from, measure_to,
                               list(stats_models), request_timeout_s, max_outstanding))


async def _replay(url: str, targets: list[str], batch_sizes: list[int], arrivals: np.ndarray, choice: np.ndarray,
                  measure_from: float, measure_to: float, stats_models: list[str], timeout_s: float,
                  max_outstanding: int) -> RateRun:
    import tritonclient.grpc.aio as aio
    from tritonclient.utils import InferenceServerException

    from servopt.measure.loadgen import BuiltinDriver, MeasurementError

    client = aio.InferenceServerClient(url)
    n = arrivals.size
    latency = np.full(n, np.nan)
    done = np.full(n, np.nan)
    errors: list[str] = []
    snapshots: dict[str, dict[str, ServerCounters]] = {}
    try:
        inputs = []
        for m, b in zip(targets, batch_sizes):
            try:
                inputs.append(await BuiltinDriver._inputs(client, m, b))
            except InferenceServerException as exc:  # no server there, or it does not serve m (callers add why)
                raise MeasurementError(f"{url}: cannot read the config of model {m!r} ({exc})") from None

        async def one(i: int, start: float) -> None:
            try:
                await client.infer(targets[choice[i]], inputs[choice[i]], client_timeout=timeout_s)
            except Exception as exc:  # noqa: BLE001 - counted as failed, the first few reported
                if len(errors) < 5:
                    errors.append(f"{targets[choice[i]]}: {type(exc).__name__}: {exc}")
                return
            now = time.monotonic() - start
            done[i] = now
            latency[i] = now - arrivals[i]

        async def snapshot(name: str, at: float, start: float) -> None:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            counts = {}
            for m in stats_models:
                counts[m] = counters_of(await client.get_inference_statistics(m, as_json=True), m)
            snapshots[name] = counts

        start = time.monotonic()
        marks = [asyncio.ensure_future(snapshot("from", measure_from, start)),
                 asyncio.ensure_future(snapshot("to", measure_to, start))]
        pending: set[asyncio.Task[None]] = set()
        for i in range(n):
            # behind schedule the sleep is 0: it still lets answers in, so their times are not held back by sending
            await asyncio.sleep(max(0.0, start + arrivals[i] - time.monotonic()))
            if len(pending) >= max_outstanding:
                errors.append(f"more than {max_outstanding} requests outstanding at {arrivals[i]:.1f} s: the "
                              f"server cannot keep up; the {n - i} requests left were not sent")
                break
            task = asyncio.ensure_future(one(i, start))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*marks)
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)
            for task in list(pending):
                task.cancel()
    finally:
        await client.close()
    counters = {m: snapshots["to"][m] - snapshots["from"][m] for m in stats_models}
    return RateRun(sent_s=arrivals, latency_s=latency, done_s=done, target=choice, targets=targets,
                   measure_from=measure_from, measure_to=measure_to, counters=counters, errors=errors)
