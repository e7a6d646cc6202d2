"""``servopt verify DIR``: drive the load a plan was made for against Triton and compare with its predictions."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError

DESCRIPTION = """Verify a plan on a real Triton server. DIR is a folder written by `servopt solve FILE --out DIR`:
its servopt.json holds the plan and its predictions (min_gpus and max_throughput plans). Each served model gets
the load the plan expects (requests of the planned batch size, 2 in flight per instance; --single-images: single
images, 2 x batch per instance), measured until stable; the report compares predicted and measured throughput,
batch latency (Triton's compute time), p50/p99 latency, the latency SLO and, projected from the measured
throughput per instance at the planned instances, the deadline for the requested images (a time-compressed run).
The SLO is judged on what it bounds in the plan: a min_gpus / max_throughput plan's latency_slo_ms bounds the
batch latency (solve offers only batches with L(b) <= SLO; a request also waits for the batch ahead), so the
measured batch latency is judged against it; a fleet plan's p99 SLO and --slo-ms bound the request p99.

The server: --server URL (gRPC, 127.0.0.1 only) for one already serving DIR's models, or --start to start a
tritonserver (nvidia-pytriton's, in .triton-venv; see docs/verify.md) on each repository in turn, checked first
to have the backends the served models need, and measured once every model has loaded. --standin
BASE_MS,PER_ITEM_MS serves timed stand-ins instead of the model files (CPU only: GPU groups become CPU instances);
--standin plan gives each model the plan's own batch latency (fleet plans: many models, each its own latency).

Fleet plans (servopt solve of a `problem: fleet` file): DIR is the whole fleet (a server per repository, in turn)
or one server's repository (DIR/<repository>, which has its own servopt.json); each model must also carry its
server's share of the model's planned rate.

Pipeline and variant_selection plans (their predictions are per served model and a request rate): requests
arrive at the planned rate (x --rate-scale) as a Poisson process (open loop) for --duration seconds after
--warmup; a pipeline's go to its ensemble, each stage measured inside it from Triton's statistics of the composing
models; a variant_selection plan's are split over the selected variants by routing.json's weights. Reported per
model and end to end: offered and measured throughput, batch latency and queue time, the batch the server formed,
planned and shown capacity, p50/p99 latency and over_slo (the fraction over the SLO: the pipeline's sla_ms, or
--slo-ms). --trace FILE replays a request-rate trace (one rate per second) instead, each trace second lasting
1/--compress wall seconds, reported per --trace-window; for min_gpus and max_throughput plans too (one
repository; rates are items/s, sent as requests of the planned batch, or single images with --single-images).

Tolerance (--tolerance, default 0.25; 0 < t < 1): the plan holds when measured throughput >= (1 - t) x predicted,
batch latency <= (1 + t) x predicted, per model and end to end, and what the SLO bounds <= (1 + t) x the SLO.
0.25 because repeated profiles of the same point on a busy shared machine differ by 25-35 % (docs/verify.md).
Rate-driven runs: the measured throughput carries (1 - t) x the rate sent, each model's batch latency is at most
(1 + t) x planned, the p99 at most (1 + t) x the SLO; with --trace, also in every trace window. --max-instances N
scales each model's predicted capacity to its served / planned instances, and the rate sent to it the same way."""

EPILOG = """examples:
  servopt verify repo/ --start --standin 4,1 --max-instances 2
  servopt verify repo/ --server 127.0.0.1:8001 --json
  servopt verify repo/ --start --standin 4,1 --plot verify.png --update-profile measured.csv
  servopt verify fleet/classifier.L4.b8.k2 --start --standin plan --max-instances 2
  servopt verify pipeline_out/ --start --rate-scale 0.5 --duration 10 --plot pipeline.png
  servopt verify variants_out/ --start --standin plan --slo-ms 750 \
      --trace data/ipa/traces/twitter_slice_bursty_damping8.csv --compress 20 --trace-window 60

exit codes:
  0  the plan holds within the tolerance
  2  bad input or usage (no servopt.json, no predictions, a URL not on 127.0.0.1)
  3  measured, and the plan does NOT hold within the tolerance (same rule for every plan kind)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo", metavar="DIR", help="folder written by servopt solve --out (with servopt.json)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", metavar="URL", help="gRPC URL of a running Triton server (127.0.0.1:PORT)")
    where.add_argument("--start", action="store_true", help="start a tritonserver on each repository in turn")
    parser.add_argument("--standin", metavar="BASE_MS,PER_ITEM_MS|plan", default=None,
                        help="with --start: serve timed stand-ins (CPU) sleeping BASE + PER_ITEM x items per batch; "
                             "'plan': each model its planned batch latency for a full batch")
    parser.add_argument("--max-instances", type=_max_instances, default=None, metavar="N",
                        help="with --start: at most N >= 1 instances per model (predictions and rates are scaled)")
    parser.add_argument("--queue-delay", choices=("plan", "repository"), default="repository",
                        help="with --standin: 'plan' sets the dynamic batcher's delay to the plan's "
                             "max_queue_delay_us (default: as the repository has it)")
    parser.add_argument("--single-images", action="store_true",
                        help="clients send single images (batch 1), 2 x batch per instance in flight")
    parser.add_argument("--cpu", action="store_true",
                        help="with --start: serve the real models on CPU instances (KIND_GPU -> KIND_CPU)")
    parser.add_argument("--tritonserver", metavar="PATH", default=None,
                        help="with --start: this tritonserver binary (default: tritonserver on PATH, else "
                             "nvidia-pytriton's in .triton-venv)")
    parser.add_argument("--tolerance", type=_tolerance, default=0.25, metavar="FRACTION",
                        help="a fraction between 0 and 1 (default 0.25)")
    parser.add_argument("--driver", choices=("builtin", "perf_analyzer"), default="builtin")
    parser.add_argument("--perf-analyzer", metavar="PATH", default=None, help="perf_analyzer binary")
    parser.add_argument("--window", type=float, default=2.0, metavar="S", help="measurement window (default 2)")
    parser.add_argument("--max-windows", type=int, default=10, metavar="N", help="windows per model at most")
    parser.add_argument("--stability", type=float, default=0.10, metavar="FRACTION",
                        help="stability rule over the last 3 windows (default 0.10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--plot", metavar="FILE.png", default=None, help="bar chart of predicted vs measured")
    parser.add_argument("--update-profile", metavar="PROFILE.csv", default=None,
                        help="append the measured points to this profile (created if missing)")
    rate = parser.add_argument_group("open-loop Poisson load (pipeline and variant_selection plans; "
                                     "--trace: every plan)")
    rate.add_argument("--rate-scale", type=float, default=1.0, metavar="X",
                      help="send X times the planned request rate (default 1; below 1 when the planned rate is more "
                           "than this machine serves)")
    rate.add_argument("--duration", type=float, default=10.0, metavar="S",
                      help="measured seconds at the planned rate, after --warmup (default 10)")
    rate.add_argument("--warmup", type=float, default=1.0, metavar="S", help="seconds sent before measuring (1)")
    rate.add_argument("--slo-ms", type=float, default=None, metavar="MS",
                      help="latency objective for over_slo and the p99 check (default: the pipeline's sla_ms; "
                           "variant_selection plans have none)")
    rate.add_argument("--trace", metavar="FILE", default=None,
                      help="replay this request-rate trace (one rate per second: .csv with an rps column, .txt) "
                           "instead of the planned rate, as a piecewise-constant Poisson process")
    rate.add_argument("--compress", type=float, default=1.0, metavar="K",
                      help="with --trace: each trace second lasts 1/K s (rates kept; K times shorter)")
    rate.add_argument("--trace-start", type=int, default=None, metavar="SECOND", help="with --trace: first second")
    rate.add_argument("--trace-end", type=int, default=None, metavar="SECOND", help="with --trace: end (excluded)")
    rate.add_argument("--trace-window", type=int, default=60, metavar="SECONDS",
                      help="with --trace: report per window of this many trace seconds (default 60)")
    rate.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrivals and the routing (0)")


def _max_instances(text: str) -> int:
    """``--max-instances``: an instance count >= 1 (argparse names the option in its error)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an instance count >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an instance count >= 1, got {n} (leave --max-instances out to "
                                         "serve the planned instances)")
    return n


def _tolerance(text: str) -> float:
    """``--tolerance``: a fraction 0 < t < 1 (at 1 or more the throughput check could never fail)."""
    try:
        t = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.25, got {text!r}") from None
    if not 0 < t < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1 (exclusive) such as 0.25, got "
                                         f"{text} (at 1 or more the throughput check could never fail)")
    return t


def _standin(text: str | None) -> tuple[float, float] | str | None:
    if text is None:
        return None
    if text == "plan":
        return "plan"
    try:
        base, per_item = (float(x) for x in text.split(","))
    except ValueError:
        raise ValidationError(f"--standin: expected BASE_MS,PER_ITEM_MS like 4,1, or plan, got {text!r}") from None
    if base < 0 or per_item < 0 or base + per_item <= 0:
        raise ValidationError(f"--standin: expected non-negative numbers, not both 0, got {text!r}")
    return base, per_item


def run(args: argparse.Namespace) -> int:
    from servopt.measure import loadgen
    from servopt.serving import verify, verify_rate

    standin = _standin(args.standin)
    if not args.start and (standin or args.max_instances or args.queue_delay != "repository"):
        raise ValidationError("--standin, --max-instances and --queue-delay apply only with --start")
    if args.cpu and (standin or not args.start):
        raise ValidationError("--cpu applies only with --start and without --standin (it serves the real models)")
    repo = Path(args.repo)
    summary = verify.load_summary(repo)
    if args.trace is None:
        trace_only = [f for f, v in (("--compress", args.compress != 1.0), ("--trace-start", args.trace_start),
                                     ("--trace-end", args.trace_end), ("--trace-window", args.trace_window != 60))
                      if v]
        if trace_only:
            raise ValidationError(f"{', '.join(trace_only)}: apply only with --trace FILE")
    if verify_rate.is_rate_driven(summary) or args.trace is not None:
        return _run_rate(args, summary, repo, standin)
    rate_only = [f for f, v in (("--rate-scale", args.rate_scale != 1.0), ("--duration", args.duration != 10.0),
                                ("--warmup", args.warmup != 1.0), ("--slo-ms", args.slo_ms is not None),
                                ("--seed", args.seed != 0)) if v]
    if rate_only:
        raise ValidationError(f"{', '.join(rate_only)}: apply to pipeline and variant_selection plans and to --trace "
                              f"replays; a {summary.get('problem')} plan is driven at its planned concurrency")
    settings = loadgen.LoadSettings(window_s=args.window, max_windows=args.max_windows, stability=args.stability,
                                    warmup_s=min(args.window, 1.0))

    def driver(url: str):
        if args.driver == "perf_analyzer":
            return loadgen.PerfAnalyzerDriver(url, settings, binary=args.perf_analyzer)
        return loadgen.BuiltinDriver(url, settings)

    def load_of(e: verify.Expectation) -> tuple[int, int]:
        return (1, 2 * e.instances * e.batch_size) if args.single_images else (e.batch_size, 2 * e.instances)

    if args.server:
        url = loadgen.check_local_url(args.server)

        def measure(e: verify.Expectation):
            from tritonclient.utils import InferenceServerException

            batch, conc = load_of(e)
            try:
                return driver(url).measure(e.model, batch, concurrency=conc)
            except InferenceServerException as exc:  # exit 2 with the reason, not a traceback
                raise loadgen.MeasurementError(f"{url}: model {e.model!r}: {exc}; is a Triton server serving "
                                               "this repository there?") from None

        report = verify.verify_plan(summary, repo, measure, tolerance=args.tolerance)
    else:
        report = _verify_started(args, summary, repo, standin, driver, load_of)
    if args.update_profile:
        statistic = _latency_statistic_of(args.update_profile)
        rows = []
        for c in report.checks:
            rows += loadgen.profile_rows([c.measured], hardware=f"{c.expected.hardware}",
                                         instances=c.expected.instances, source=f"servopt verify {repo}",
                                         latency=statistic)
        loadgen.write_profile_rows(rows, args.update_profile, append=True)
    if args.plot:
        report.plot(args.plot)
    if args.json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        print(report.to_table())
    if not report.holds:
        print(f"servopt verify: the plan does not hold within {args.tolerance:.0%} (exit 3)", file=sys.stderr)
        return verify.EXIT_PLAN_FAILED
    return 0


def _trace_load(args: argparse.Namespace, plan) -> tuple[list, float, list, str]:
    """Arrival segments, the end of the measured span, the report windows and the trace's name."""
    import numpy as np

    from servopt.serving.traces import rate_segments, read_trace

    warm = [(args.warmup, plan.offered_rps)] if args.warmup > 0 else []
    if args.trace is None:
        return warm + [(args.duration, plan.offered_rps)], args.warmup + args.duration, [], ""
    if not args.trace_window >= 1:
        raise ValidationError(f"--trace-window: expected trace seconds >= 1, got {args.trace_window}")
    trace = read_trace(args.trace, start=args.trace_start, end=args.trace_end)
    k = args.compress
    scale = plan.rate_scale * plan.instance_scale  # --rate-scale, and the instances served (--max-instances)
    first = float(np.mean(trace.rps[:args.trace_window])) * scale  # warm up at the trace's first rate
    warm = [(args.warmup, first)] if args.warmup > 0 else []  # a rate of 0 keeps the windows' times
    segments = warm + rate_segments(trace, compress=k, scale=scale)
    windows = []
    for a in range(0, trace.duration_s, args.trace_window):
        b = min(trace.duration_s, a + args.trace_window)
        windows.append((f"{a}-{b} s", args.warmup + a / k, args.warmup + b / k,
                        float(np.mean(trace.rps[a:b])) * scale))
    return segments, args.warmup + trace.duration_s / k, windows, f"{trace.source} compressed {k:g}x"


def _run_rate(args: argparse.Namespace, summary: dict, repo: Path, standin) -> int:
    """Verify a pipeline or variant_selection plan (an open-loop Poisson replay at its rate, or a trace), or
    replay a trace against a min_gpus / max_throughput plan's repository."""
    import numpy as np

    from servopt.measure.loadgen import check_local_url
    from servopt.serving import verify, verify_rate, verify_report
    from servopt.serving.traces import poisson_arrivals
    from servopt.serving.verify_drive import replay

    gpu = not verify_rate.is_rate_driven(summary)
    what = "a trace replay" if gpu else f"a {summary['problem']} plan"
    for flag, bad in (("--update-profile", args.update_profile), ("--single-images", args.single_images and not gpu),
                      ("--driver perf_analyzer", args.driver == "perf_analyzer"),
                      ("--queue-delay plan", args.queue_delay != "repository" and not gpu)):
        if bad:  # a pipeline or variant_selection repository already holds the plan's queue delays
            raise ValidationError(f"{flag}: applies to min_gpus and max_throughput plans driven at their planned "
                                  f"concurrency; {what} is driven by the built-in open-loop driver")
    if not (args.duration > 0 and args.warmup >= 0):
        raise ValidationError(f"--duration must be > 0 and --warmup >= 0, got {args.duration}, {args.warmup}")
    served_instances = args.max_instances if args.start else None
    if gpu:
        plan = verify_rate.gpu_rate_plan(summary, repo, rate_scale=args.rate_scale, slo_ms=args.slo_ms,
                                         served_instances=served_instances, single_images=args.single_images)
    else:
        plan = verify_rate.rate_plan(summary, repo, rate_scale=args.rate_scale, slo_ms=args.slo_ms,
                                     served_instances=served_instances)
    segments, end, windows, trace = _trace_load(args, plan)
    # rates are items per second; requests carry plan.request_batch items each
    arrivals = poisson_arrivals([(d, r / plan.request_batch) for d, r in segments], seed=args.seed)
    if not np.any((arrivals >= args.warmup) & (arrivals < end)):
        raise ValidationError(f"no request falls in the measured {end - args.warmup:g} s (rate {plan.offered_rps:g}/s"
                              f"{', trace ' + trace if trace else ''}); measure longer or at a higher rate")

    def drive(url: str):
        return replay(url, plan.targets, plan.weights, [plan.request_batch] * len(plan.targets), arrivals,
                      measure_from=args.warmup, measure_to=end, stats_models=[s.model for s in plan.stages],
                      seed=args.seed)

    if args.server:
        from servopt.measure.loadgen import MeasurementError

        try:
            run = drive(check_local_url(args.server))
        except MeasurementError as exc:  # a model the server there does not serve
            raise MeasurementError(f"{exc}; is a Triton server serving this repository there?") from None
    else:
        env = _server_env(args, summary, repo, standin)
        with tempfile.TemporaryDirectory(prefix="servopt-verify-") as tmp:
            served = _served_copy(args, repo / plan.repository, Path(tmp), standin,
                                  plan.standin_timings() if standin == "plan" else None,
                                  plan.queue_delay_us if args.queue_delay == "plan" else None)
            with _serving(env, served, Path(tmp)) as server, _server_errors(server):
                run = drive(f"127.0.0.1:{server.grpc_port}")
    report = verify_report.analyze(plan, run, tolerance=args.tolerance, windows=windows, trace=trace or None)
    if windows:  # the trace's mean rate (x --rate-scale), weighted by the windows' lengths
        span = sum(hi - lo for _, lo, hi, _ in windows)
        report.offered_rps = sum((hi - lo) * rate for _, lo, hi, rate in windows) / span
    if args.plot:
        report.plot(args.plot)
    print(json.dumps(report.to_dict(), default=str) if args.json else report.to_table())
    if not report.holds:
        print(f"servopt verify: the plan does not hold within {args.tolerance:.0%} (exit 3)", file=sys.stderr)
        return verify.EXIT_PLAN_FAILED
    return 0


def _server_env(args: argparse.Namespace, summary: dict, repo: Path, standin):
    """The tritonserver ``--start`` runs, checked before anything starts to have every backend the served models
    need (stand-ins: python; else each config's backend: nvidia-pytriton's server has only python)."""
    from servopt.serving import verify
    from servopt.serving.tritonserver import TritonSetupError, resolve_env

    try:
        env = resolve_env(getattr(args, "tritonserver", None))
    except TritonSetupError as exc:  # exit 2 with the message, not a traceback
        raise ValidationError(str(exc)) from None
    needed: dict[str, list[str]] = {"python": ["the stand-ins"]} if standin is not None else {}
    if standin is None:
        for r in summary["repositories"]:
            for cfg in sorted((repo / r["path"]).glob("*/config.pbtxt")):
                backend = verify.backend_of(cfg)
                if backend is not None:
                    needed.setdefault(backend, []).append((Path(r["path"]) / cfg.parent.name).as_posix())
    missing = sorted(b for b in needed if not (env.backends / b).is_dir())
    if missing:
        users = "; ".join(f"{b}: {', '.join(needed[b])}" for b in missing)
        raise ValidationError(f"--start: {env.server} has no {', '.join(missing)} backend (in {env.backends}), which "
                              f"the served models need ({users}); give --tritonserver PATH of a server that has it "
                              "(the NGC image nvcr.io/nvidia/tritonserver), serve timed stand-ins with --standin, or "
                              "write the repository with `servopt solve FILE --out DIR --triton-backend python`")
    return env


@contextlib.contextmanager
def _serving(env, served: Path, work: Path) -> Iterator[Any]:
    """A tritonserver over ``served`` (stopped when the block ends), once every model has loaded. A server that
    does not start, or a model that does not load, exits 2 with the reason from the server's log (read here, while
    the temporary folder holding it exists)."""
    from servopt.measure.loadgen import MeasurementError
    from servopt.serving.tritonserver import TritonCheckError, TritonServer

    server = TritonServer(env, [served], work)
    try:
        server.start()  # a failed start stops what it started
    except TritonCheckError as exc:  # e.g. a Python backend stub that died: its own output is the reason
        why = exc.reason or "; ".join(server.load_errors()) or "no error in its log"
        raise MeasurementError(f"--start: {str(exc).splitlines()[0]} ({env.server}, repository {served}); its log "
                               f"says: {why}") from None
    try:
        failed = server.not_ready()
        if failed:
            states = ", ".join(f"{name} ({state or 'not loaded'})" for name, state, _ in failed)
            why = "; ".join(server.load_errors()) or "; ".join(f"{n}: {r}" for n, _, r in failed)
            raise MeasurementError(f"--start: {len(failed)} model(s) did not load on the tritonserver servopt "
                                   f"started ({env.server}): {states}; its log says: {why}")
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def _server_errors(server) -> Iterator[None]:
    """A request the started server refuses exits 2 with its answer and the server's log, not a traceback."""
    from tritonclient.utils import InferenceServerException

    from servopt.measure.loadgen import MeasurementError

    try:
        yield
    except (InferenceServerException, MeasurementError) as exc:
        why = "; ".join(server.load_errors()) or "no error in its log"
        raise MeasurementError(f"the tritonserver servopt started (127.0.0.1:{server.grpc_port}): {exc}; its log "
                               f"says: {why}") from None


def _served_copy(args: argparse.Namespace, path: Path, work: Path, standin, timings, delay) -> Path:
    """The repository the started server loads: ``path`` itself, or a stand-in / CPU copy under ``work``."""
    from servopt.serving import verify

    if standin is not None:
        base, per_item = (0.0, 0.0) if standin == "plan" else standin
        verify.make_standin_copy(path, work / "repo", base_ms=base, per_item_ms=per_item,
                                 max_instances=args.max_instances, max_queue_delay_us=delay, timings=timings)
        return work / "repo"
    if getattr(args, "cpu", False):
        verify.make_cpu_copy(path, work / "repo", max_instances=args.max_instances, max_queue_delay_us=delay)
        return work / "repo"
    return path


def _verify_started(args, summary, repo, standin, driver, load_of):
    """Start a server per repository (one model name may be in several), measure its models, stop it."""
    from servopt.serving import verify

    env = _server_env(args, summary, repo, standin)
    expected = verify.expectations(summary, repo, served_instances=args.max_instances)
    delay = None
    if args.queue_delay == "plan":
        delays = {e.repository: e.max_queue_delay_us for e in expected}
    points: dict[tuple[str, str], object] = {}
    with tempfile.TemporaryDirectory(prefix="servopt-verify-") as tmp:
        for r in summary["repositories"]:
            path = repo / r["path"]
            work = Path(tmp) / f"w{len(points)}_{Path(r['path']).name}"
            work.mkdir()
            if args.queue_delay == "plan":
                delay = delays.get(r["path"])
            timings = None
            if standin == "plan":
                timings = {m: t for (rp, m), t in verify.standin_timings(expected).items() if rp == r["path"]}
            served = _served_copy(args, path, work, standin, timings, delay)
            with _serving(env, served, work) as server, _server_errors(server):
                url = f"127.0.0.1:{server.grpc_port}"
                for e in expected:
                    if e.repository == r["path"]:
                        batch, conc = load_of(e)
                        points[(e.repository, e.model)] = driver(url).measure(e.model, batch, concurrency=conc)
    return verify.verify_plan(summary, repo, lambda e: points[(e.repository, e.model)], tolerance=args.tolerance,
                              served_instances=args.max_instances)


def _latency_statistic_of(path: str) -> str:
    """What ``latency_ms`` means in the profile that ``--update-profile`` appends to: ``"service"`` when its rows
    carry the label ``latency_statistic = service`` (``servopt profile --latency service``), else ``"p50"``, so
    appended rows mean the same as the rows already there (a profile mixing both is refused)."""
    import csv

    file = Path(path)
    if not file.is_file():
        return "p50"
    with file.open(newline="") as fh:
        labels = {(row.get("latency_statistic") or "p50") for row in csv.DictReader(fh)}
    if len(labels) > 1:
        raise ValidationError(f"{path}: latency_statistic: rows mix {', '.join(sorted(labels))}; "
                              "--update-profile appends to a profile with one kind of latency row")
    return labels.pop() if labels else "p50"
