"""Load generation against a running Triton server: two interchangeable drivers, one record type.

* :class:`BuiltinDriver` sends requests with ``tritonclient.grpc.aio`` (asyncio): closed-loop *concurrency* mode
  (N requests always in flight) or open-loop *request-rate* mode (Poisson arrivals at a given rate, requests do not
  wait for each other). Each point: a warm-up, then measurement windows repeated until stable, at most
  ``max_windows``. Server-side queue and compute times come from Triton's statistics API
  (``get_inference_statistics``, the difference over each window).
* :class:`PerfAnalyzerDriver` runs NVIDIA's ``perf_analyzer`` binary (``--concurrency-range`` or
  ``--request-rate-range``, ``-b``, ``-f out.csv``) and parses its CSV and its per-pass lines.

Both return :class:`LoadPoint` records. **Stability** (the same rule as perf_analyzer's ``--stability-percentage``):
a point is stable when, over the last ``stable_windows`` windows (default 3), every window's throughput and p99
latency lie within ``stability`` (default 0.10, i.e. +-10 %) of those windows' mean. The point's numbers are then
those windows' pooled requests; ``throughput_spread`` and ``p99_spread`` are (max - min) / mean over them: the
run-to-run spread of the point. A point that never settles within ``max_windows`` is returned with
``stable=False`` and the last windows' numbers.

Only ``127.0.0.1`` / ``localhost`` URLs are accepted: the drivers are for a server on this machine.
"""

from __future__ import annotations

import asyncio
import csv
import math
import random
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from servopt.exceptions import ServoptError, ValidationError

__all__ = ["MeasurementError", "LoadPoint", "LoadSettings", "BuiltinDriver", "PerfAnalyzerDriver", "find_perf_analyzer",
           "perf_analyzer_command", "parse_perf_analyzer_csv", "LATENCY_STATISTICS", "check_local_url", "stability", "profile_rows",
           "write_profile_rows", "profile_served", "model_instances", "perf_analyzer_environ", "PROFILE_COLUMNS"]


class MeasurementError(ServoptError, RuntimeError):
    """A load point could not be measured (a failed request, nothing finished, perf_analyzer failed)."""


@dataclass(frozen=True)
class LoadPoint:
    """One measured load point (times in ms, throughput in items per second: requests x batch size)."""

    model: str
    batch_size: int
    concurrency: int | None
    request_rate: float | None
    throughput_rps: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    latency_avg_ms: float
    server_queue_ms: float | None
    server_compute_ms: float | None
    requests: int
    windows: int
    stable: bool
    throughput_spread: float
    p99_spread: float
    server_batch_avg: float | None = None
    driver: str = "builtin"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LoadSettings:
    """How each point is measured. ``stability`` is the allowed relative deviation from the mean of the last
    ``stable_windows`` windows, for throughput and p99 alike (perf_analyzer: 10 %, 3 windows)."""

    window_s: float = 2.0
    warmup_s: float = 1.0
    stability: float = 0.10
    stable_windows: int = 3
    max_windows: int = 10
    request_timeout_s: float = 30.0
    max_outstanding: int = 2048

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and self.warmup_s >= 0 and self.stability > 0 and self.request_timeout_s > 0):
            raise ValidationError(f"load settings: window_s, stability and request_timeout_s must be > 0 and "
                                  f"warmup_s >= 0, got {self}")
        if not (1 <= self.stable_windows <= self.max_windows <= 1000):
            raise ValidationError(f"load settings: need 1 <= stable_windows <= max_windows <= 1000, got "
                                  f"stable_windows={self.stable_windows}, max_windows={self.max_windows}")


def check_local_url(url: str) -> str:
    """``host:port`` of a gRPC URL on this machine (``127.0.0.1:8001``, ``localhost:8001``, ``grpc://...``)."""
    text = re.sub(r"^[a-z]+://", "", url.strip()).rstrip("/")
    host, _, port = text.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        raise ValidationError(f"server URL {url!r}: expected 127.0.0.1:PORT or localhost:PORT (the gRPC port of a "
                              "Triton server on this machine)")
    return f"127.0.0.1:{int(port)}"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _spread(values: list[float]) -> float:
    mean = sum(values) / len(values) if values else 0.0
    return (max(values) - min(values)) / mean if mean > 0 else 0.0


def stability(throughputs: list[float], p99s: list[float], tolerance: float, windows: int) -> bool:
    """True when the last ``windows`` throughputs and p99s each lie within ``tolerance`` of their mean.

    >>> stability([100, 98, 103], [10, 10.5, 9.8], 0.10, 3)
    True
    >>> stability([100, 80, 103], [10, 10.5, 9.8], 0.10, 3)
    False
    """
    if len(throughputs) < windows:
        return False
    for series in (throughputs[-windows:], p99s[-windows:]):
        mean = sum(series) / windows
        if mean <= 0 or any(abs(v - mean) > tolerance * mean for v in series):
            return False
    return True


# -- built-in driver ---------------------------------------------------------------------------------------------
@dataclass
class _Window:
    start: float
    end: float
    latencies: list[float]
    stats: dict[str, float]


def _stats_totals(raw: dict[str, Any], model: str) -> dict[str, float]:
    """Cumulative counters of one model from ``get_inference_statistics(as_json=True)``."""
    totals = {"success": 0.0, "queue_ns": 0.0, "compute_ns": 0.0, "executions": 0.0, "inferences": 0.0}
    for stat in raw.get("model_stats", []):
        if stat.get("name") != model:
            continue
        inf = stat.get("inference_stats", {})
        totals["success"] += float(inf.get("success", {}).get("count", 0))
        totals["queue_ns"] += float(inf.get("queue", {}).get("ns", 0))
        for part in ("compute_input", "compute_infer", "compute_output"):
            totals["compute_ns"] += float(inf.get(part, {}).get("ns", 0))
        totals["executions"] += float(stat.get("execution_count", 0))
        totals["inferences"] += float(stat.get("inference_count", 0))
    return totals


class BuiltinDriver:
    """Measure a model on a Triton server with ``tritonclient.grpc.aio``.

    Parameters
    ----------
    url : str
        gRPC endpoint on this machine, e.g. ``127.0.0.1:8001``.
    settings : LoadSettings
        Windows, warm-up and the stability rule.
    seed : int
        Seed of the Poisson arrivals in request-rate mode.
    """

    name = "builtin"

    def __init__(self, url: str, settings: LoadSettings | None = None, *, seed: int = 0) -> None:
        self.url = url
        self.settings = settings or LoadSettings()
        self.seed = seed

    def measure(self, model: str, batch_size: int, *, concurrency: int | None = None,
                request_rate: float | None = None) -> LoadPoint:
        """One point: ``concurrency`` requests in flight, or Poisson arrivals at ``request_rate`` requests/s."""
        if (concurrency is None) == (request_rate is None):
            raise ValidationError("give exactly one of concurrency or request_rate")
        if concurrency is not None and not (1 <= concurrency <= 4096):
            raise ValidationError(f"concurrency: expected 1..4096, got {concurrency}")
        if request_rate is not None and not (0 < request_rate <= 1e6):
            raise ValidationError(f"request_rate: expected > 0 and <= 1e6 requests/s, got {request_rate}")
        if batch_size < 1:
            raise ValidationError(f"batch_size: expected >= 1, got {batch_size}")
        check_local_url(self.url)
        return asyncio.run(self._measure(model, batch_size, concurrency, request_rate))

    async def _measure(self, model: str, batch: int, concurrency: int | None, rate: float | None) -> LoadPoint:
        import tritonclient.grpc.aio as aio

        s = self.settings
        client = aio.InferenceServerClient(check_local_url(self.url))
        try:
            inputs = await self._inputs(client, model, batch)
            done: list[tuple[float, float]] = []  # (end time, latency s)
            errors: list[BaseException] = []
            stop = asyncio.Event()

            async def one(sent: float) -> None:
                try:
                    await client.infer(model, inputs, client_timeout=s.request_timeout_s)
                except Exception as exc:  # noqa: BLE001 - reported after the run
                    errors.append(exc)
                    stop.set()
                    return
                end = time.monotonic()
                done.append((end, end - sent))

            async def closed_loop() -> None:
                while not stop.is_set():
                    await one(time.monotonic())

            async def open_loop() -> None:
                rng = random.Random(self.seed)
                pending: set[asyncio.Task[None]] = set()
                next_at = time.monotonic()
                while not stop.is_set():
                    next_at += rng.expovariate(rate)
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if len(pending) >= s.max_outstanding:
                        errors.append(RuntimeError(f"more than {s.max_outstanding} requests outstanding at "
                                                   f"{rate:g} requests/s: the server cannot keep up"))
                        stop.set()
                        break
                    task = asyncio.ensure_future(one(next_at))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                if pending:
                    await asyncio.wait(pending, timeout=s.request_timeout_s)

            workers = ([asyncio.ensure_future(closed_loop()) for _ in range(concurrency)] if concurrency
                       else [asyncio.ensure_future(open_loop())])
            windows: list[_Window] = []
            try:
                await asyncio.sleep(s.warmup_s)
                before = _stats_totals(await client.get_inference_statistics(model, as_json=True), model)
                started = time.monotonic()
                throughputs: list[float] = []
                p99s: list[float] = []
                for _ in range(s.max_windows):
                    if stop.is_set():
                        break
                    await asyncio.sleep(s.window_s)
                    after = _stats_totals(await client.get_inference_statistics(model, as_json=True), model)
                    ended = time.monotonic()
                    lats = [lat for end, lat in done if started <= end < ended]
                    delta = {k: after[k] - before[k] for k in after}
                    windows.append(_Window(started, ended, lats, delta))
                    throughputs.append(len(lats) * batch / (ended - started))
                    p99s.append(_percentile(lats, 99) if lats else math.inf)
                    before, started = after, ended
                    if stability(throughputs, p99s, s.stability, s.stable_windows):
                        break
            finally:
                stop.set()
                await asyncio.wait(workers, timeout=s.request_timeout_s)
            if errors:
                raise MeasurementError(f"{model}: a request failed: {type(errors[0]).__name__}: {errors[0]}")
            return self._point(model, batch, concurrency, rate, windows, throughputs, p99s)
        finally:
            await client.close()

    def _point(self, model: str, batch: int, concurrency: int | None, rate: float | None, windows: list[_Window],
               throughputs: list[float], p99s: list[float]) -> LoadPoint:
        s = self.settings
        stable = stability(throughputs, p99s, s.stability, s.stable_windows)
        last = windows[-s.stable_windows:]
        lats = [lat * 1000 for w in last for lat in w.latencies]
        if not lats:
            raise MeasurementError(f"{model}: no request finished within {len(windows)} windows of {s.window_s:g} s")
        span = sum(w.end - w.start for w in last)
        totals = {k: sum(w.stats[k] for w in last) for k in last[0].stats}
        served = totals["success"]
        return LoadPoint(
            model=model, batch_size=batch, concurrency=concurrency, request_rate=rate,
            throughput_rps=len(lats) * batch / span,
            latency_p50_ms=_percentile(lats, 50), latency_p90_ms=_percentile(lats, 90),
            latency_p99_ms=_percentile(lats, 99), latency_avg_ms=sum(lats) / len(lats),
            server_queue_ms=totals["queue_ns"] / served / 1e6 if served else None,
            server_compute_ms=totals["compute_ns"] / served / 1e6 if served else None,
            requests=len(lats), windows=len(windows), stable=stable,
            throughput_spread=_spread(throughputs[-s.stable_windows:]),
            p99_spread=_spread([p for p in p99s[-s.stable_windows:] if math.isfinite(p)] or [0.0]),
            server_batch_avg=totals["inferences"] / totals["executions"] if totals["executions"] else None,
            driver=self.name)

    @staticmethod
    async def _inputs(client: Any, model: str, batch: int) -> list[Any]:
        import numpy as np
        import tritonclient.grpc.aio as aio
        from tritonclient.utils import triton_to_np_dtype

        config = (await client.get_model_config(model, as_json=True))["config"]
        batching = int(config.get("max_batch_size", 0)) > 0
        if not batching and batch != 1:
            raise ValidationError(f"{model} does not batch (max_batch_size 0): only batch size 1 can be sent")
        inputs = []
        for io in config.get("input", []):
            dtype = str(io.get("data_type", "TYPE_FP32"))[len("TYPE_"):]
            dims = [1 if int(d) < 0 else int(d) for d in io.get("dims", [])]
            shape = ([batch] if batching else []) + dims
            item = aio.InferInput(io["name"], shape, dtype)
            if dtype in ("BYTES", "STRING"):
                item.set_data_from_numpy(np.full(shape, b"", dtype=object))
            else:
                item.set_data_from_numpy(np.zeros(shape, dtype=triton_to_np_dtype(dtype)))
            inputs.append(item)
        return inputs


# -- perf_analyzer -----------------------------------------------------------------------------------------------
def find_perf_analyzer(path: str | Path | None = None) -> Path | None:
    """``path`` if given (must exist), else ``perf_analyzer`` on PATH, else ``.perf-analyzer/perf_analyzer`` in
    the project (written by ``scripts/perf_analyzer_env.sh``); None when none is found."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValidationError(f"--perf-analyzer {path}: no such file")
        return p
    found = shutil.which("perf_analyzer")
    if found:
        return Path(found)
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            local = parent / ".perf-analyzer" / "perf_analyzer"
            return local if local.is_file() else None
    return None


def perf_analyzer_command(model: str, batch_size: int, *, url: str = "127.0.0.1:8001",
                          concurrency: int | None = None, request_rate: float | None = None,
                          settings: LoadSettings | None = None, csv_path: str | None = None,
                          binary: str = "perf_analyzer") -> list[str]:
    """The perf_analyzer command line for one point (``csv_path``: ``-f``).

    >>> " ".join(perf_analyzer_command("m", 8, request_rate=25))  # doctest: +NORMALIZE_WHITESPACE
    'perf_analyzer -m m -u 127.0.0.1:8001 -i grpc -b 8 --request-rate-range 25:25 --request-distribution poisson
     --measurement-interval 2000 --stability-percentage 10 --max-trials 10'
    """
    s = settings or LoadSettings()
    cmd = [binary, "-m", model, "-u", url, "-i", "grpc", "-b", str(batch_size)]
    if concurrency is not None:
        cmd += ["--concurrency-range", f"{concurrency}:{concurrency}"]
    else:
        cmd += ["--request-rate-range", f"{request_rate:g}:{request_rate:g}", "--request-distribution", "poisson"]
    cmd += ["--measurement-interval", f"{s.window_s * 1000:.0f}", "--stability-percentage",
            f"{s.stability * 100:g}", "--max-trials", str(s.max_windows)]
    if csv_path:
        cmd += ["-f", csv_path]
    return cmd


def parse_perf_analyzer_csv(text: str, *, model: str, batch_size: int, stdout: str = "",
                            stable_windows: int = 3) -> list[LoadPoint]:
    """perf_analyzer's ``-f`` CSV (times in us) -> points; ``stdout`` gives the per-pass throughputs (spread),
    the request count and whether it settled ("Failed to obtain stable measurement" means it did not)."""
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise ValidationError("perf_analyzer wrote no rows")
    passes = [(float(t), float(p)) for t, p in re.findall(
        r"Pass \[\d+\] throughput: ([\d.]+) infer/sec\. p99 latency: (\d+) usec", stdout)]
    counts = [int(c) for c in re.findall(r"Request count: (\d+)", stdout)]
    stable = "Failed to obtain stable measurement" not in stdout
    points = []
    for row in rows:
        def us(col: str) -> float:
            return float(row.get(col) or 0) / 1000.0

        conc = row.get("Concurrency")
        rate = row.get("Request Rate")
        last = passes[-stable_windows:]
        compute = us("Server Compute Input") + us("Server Compute Infer") + us("Server Compute Output")
        points.append(LoadPoint(
            model=model, batch_size=batch_size,
            concurrency=int(float(conc)) if conc not in (None, "") else None,
            request_rate=float(rate) if rate not in (None, "") else None,
            throughput_rps=float(row["Inferences/Second"]),
            latency_p50_ms=us("p50 latency"), latency_p90_ms=us("p90 latency"), latency_p99_ms=us("p99 latency"),
            latency_avg_ms=us("Avg latency") if row.get("Avg latency") else us("p50 latency"),
            server_queue_ms=us("Server Queue"), server_compute_ms=compute,
            requests=counts[-1] if counts else 0, windows=len(passes), stable=stable,
            throughput_spread=_spread([t for t, _ in last]) if last else 0.0,
            p99_spread=_spread([p for _, p in last]) if last else 0.0,
            driver="perf_analyzer"))
    return points


@dataclass
class PerfAnalyzerDriver:
    """Measure with the perf_analyzer binary (see docs/verify.md for the recipe that installs it)."""

    url: str
    settings: LoadSettings = field(default_factory=LoadSettings)
    binary: str | Path | None = None
    name: str = "perf_analyzer"

    def measure(self, model: str, batch_size: int, *, concurrency: int | None = None,
                request_rate: float | None = None) -> LoadPoint:
        if (concurrency is None) == (request_rate is None):
            raise ValidationError("give exactly one of concurrency or request_rate")
        binary = find_perf_analyzer(self.binary)
        if binary is None:
            raise ValidationError("perf_analyzer not found (give --perf-analyzer PATH, put it on PATH, or run "
                                  "scripts/perf_analyzer_env.sh; see docs/verify.md)")
        # perf_analyzer writes nothing for a point that never settles: then once more with twice the tolerance
        # (the point is marked not stable), and an error if that fails too
        tolerances = [self.settings.stability, min(1.0, 2 * self.settings.stability)]
        for attempt, tolerance in enumerate(tolerances):
            s = replace(self.settings, stability=tolerance)
            with tempfile.TemporaryDirectory(prefix="servopt-pa-") as tmp:
                out = Path(tmp) / "out.csv"
                cmd = perf_analyzer_command(model, batch_size, url=check_local_url(self.url),
                                            concurrency=concurrency, request_rate=request_rate, settings=s,
                                            csv_path=str(out), binary=str(binary))
                limit = s.warmup_s + s.max_windows * (s.window_s * 3 + s.request_timeout_s) + 60
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                                      env=perf_analyzer_environ(Path(binary)))
                if proc.returncode == 0 and out.is_file():
                    points = parse_perf_analyzer_csv(out.read_text(), model=model, batch_size=batch_size,
                                                     stdout=proc.stdout, stable_windows=s.stable_windows)
                    return replace(points[0], stable=attempt == 0)
                unstable = "Failed to obtain stable measurement" in proc.stdout
                if not unstable or attempt == len(tolerances) - 1:
                    hint = " (never stable: a busy machine; raise --window or --stability)" if unstable else ""
                    raise MeasurementError(f"{' '.join(cmd)} failed with exit code {proc.returncode}{hint}:\n"
                                           f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        raise AssertionError("unreachable: the last attempt returns or raises")


def perf_analyzer_environ(binary: Path) -> dict[str, str]:
    """The environment for ``binary``: a ``lib`` folder beside it (libb64, libcudart) on ``LD_LIBRARY_PATH``."""
    import os

    env = dict(os.environ)
    libs = binary.resolve().parent / "lib"
    if libs.is_dir():
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libs), env.get("LD_LIBRARY_PATH")) if p)
    return env


# -- profiles ----------------------------------------------------------------------------------------------------
#: profile columns of a served measurement, in order (labels: concurrency, request_rate, instances, driver)
PROFILE_COLUMNS = ("model", "variant", "hardware", "batch_size", "concurrency", "request_rate", "instances",
                   "driver", "latency_statistic", "latency_ms", "latency_p90_ms", "latency_p99_ms", "latency_avg_ms", "throughput_rps",
                   "server_queue_ms", "server_compute_ms", "server_batch_avg", "requests", "windows", "stable",
                   "throughput_spread", "p99_spread", "source", "gflops", "param_mb", "act_peak_mb",
                   "mem_pattern")


#: what ``latency_ms`` of a served profile holds (``servopt profile --triton ... --latency``)
LATENCY_STATISTICS = ("p50", "service")


def profile_rows(points: list[LoadPoint], *, hardware: str, instances: int | None, variant: str | None = None,
                 source: str = "", latency: str = "p50") -> list[dict[str, Any]]:
    """Points -> rows of a servopt profile; the load (``concurrency`` or ``request_rate``), ``instances`` and
    ``driver`` are labels; the spread columns hold the run-to-run spread of the point (see :func:`stability`).

    ``latency`` says what ``latency_ms`` is:

    * ``"p50"`` (default): the client's p50 latency of one request of ``batch_size`` items at that load (at
      concurrency 1: the time to run one batch, plus the network);
    * ``"service"``: the time per batch of one instance that the measured throughput implies,
      ``instances x batch_size x 1000 / throughput_rps``: what a GPU plan's batch latency stands for (an instance
      that runs batches back to back). At concurrency 1 it is about the mean latency; with requests queued
      (concurrency 2 per instance, the load ``servopt verify`` drives) the transfers of one request overlap
      the run of another, and it is the batch time the plan's throughput depends on. The rows get the label
      ``latency_statistic = service``.

    >>> p = LoadPoint(model="m", batch_size=8, concurrency=2, request_rate=None, throughput_rps=400,
    ...               latency_p50_ms=35, latency_p90_ms=38, latency_p99_ms=40, latency_avg_ms=36,
    ...               server_queue_ms=15, server_compute_ms=18, requests=100, windows=3, stable=True,
    ...               throughput_spread=0.05, p99_spread=0.05)
    >>> [r["latency_ms"] for r in profile_rows([p], hardware="cpu", instances=1)]
    [35]
    >>> row, = profile_rows([p], hardware="cpu", instances=1, latency="service")
    >>> row["latency_ms"], row["latency_statistic"], row["latency_p99_ms"]
    (20.0, 'service', 40)
    """
    if latency not in LATENCY_STATISTICS:
        raise ValidationError(f"latency: expected one of {', '.join(LATENCY_STATISTICS)}, got {latency!r}")
    rows = []
    for p in points:
        if latency == "service":
            if not p.throughput_rps > 0:
                raise MeasurementError(f"{p.model}: batch {p.batch_size}: no throughput measured, so no service time")
            value = (instances or 1) * p.batch_size * 1000.0 / p.throughput_rps
        else:
            value = p.latency_p50_ms
        rows.append({
            "model": p.model, "variant": variant or p.model, "hardware": hardware, "batch_size": p.batch_size,
            "concurrency": p.concurrency, "request_rate": p.request_rate, "instances": instances,
            "driver": p.driver, "latency_statistic": "service" if latency == "service" else None,
            "latency_ms": value, "latency_p90_ms": p.latency_p90_ms,
            "latency_p99_ms": max(p.latency_p99_ms, value), "latency_avg_ms": p.latency_avg_ms,
            "throughput_rps": p.throughput_rps, "server_queue_ms": p.server_queue_ms,
            "server_compute_ms": p.server_compute_ms, "server_batch_avg": p.server_batch_avg,
            "requests": p.requests, "windows": p.windows, "stable": int(p.stable),
            "throughput_spread": p.throughput_spread, "p99_spread": p.p99_spread,
            "source": source or f"triton ({p.driver})"})
    return rows


def write_profile_rows(rows: list[dict[str, Any]], path: str | Path, *, append: bool = False) -> Path:
    """Write (or append to) a profile CSV atomically; columns that are empty in every row are left out.

    Appending reads the existing file's header and keeps its rows; new columns are added at the end."""
    import io

    from servopt.atomic import atomic_write

    path = Path(path)
    old_rows: list[dict[str, Any]] = []
    header: list[str] = []
    if append and path.is_file():
        reader = csv.DictReader(io.StringIO(path.read_text()))
        header = list(reader.fieldnames or [])
        old_rows = list(reader)
    for col in PROFILE_COLUMNS:
        if col not in header and any(r.get(col) not in (None, "") for r in rows):
            header.append(col)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in old_rows + rows:
        writer.writerow({k: _cell(row.get(k)) for k in header})
    with atomic_write(path, "w") as fh:
        fh.write(out.getvalue())
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def model_instances(url: str, model: str) -> int | None:
    """The number of instances a served model runs (the sum of its instance groups' counts)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(check_local_url(url))
    try:
        config = client.get_model_config(model, as_json=True)["config"]
    finally:
        client.close()
    groups = config.get("instance_group", [])
    return sum(int(g.get("count", 1)) for g in groups) or None


def profile_served(driver: Any, model: str, batch_sizes: list[int], *, concurrencies: list[int] | None = None,
                   request_rates: list[float] | None = None, progress: Any = None) -> list[LoadPoint]:
    """Measure every batch size at every concurrency (default [1]) or request rate; ``progress(point)`` is
    called after each point."""
    loads: list[dict[str, Any]] = ([{"request_rate": r} for r in request_rates] if request_rates else
                                   [{"concurrency": c} for c in (concurrencies or [1])])
    points = []
    for b in batch_sizes:
        for load in loads:
            point = driver.measure(model, b, **load)
            points.append(point)
            if progress is not None:
                progress(point)
    return points
