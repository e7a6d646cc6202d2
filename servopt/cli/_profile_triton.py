"""``servopt profile --triton URL --model NAME`` and ``servopt profile MODEL.onnx --triton start``: measure a served
model into a profile (the branch of ``servopt profile`` that talks to a Triton server instead of running ONNX
Runtime; ``start`` serves the ONNX file on a tritonserver of its own, :mod:`servopt.measure.served_onnx`; see
docs/profiler.md and docs/verify.md). Everything is checked before a server starts; the rows are written once,
at the end."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from servopt.cli._options import int_list
from servopt.exceptions import ValidationError

if TYPE_CHECKING:
    from servopt.measure.loadgen import LoadSettings

    #: what to measure: the settings, the concurrencies and the request rates
    LoadPlan = tuple[LoadSettings, list[int] | None, list[float] | None]


def _rates(text: str) -> list[float]:
    try:
        rates = [float(p) for p in text.split(",")]
    except ValueError:
        rates = []
    if not rates or not all(0 < r <= 1e6 for r in rates):
        raise ValidationError(f"--request-rate: expected comma-separated rates > 0 like 10,20.5, got {text!r}")
    return rates


#: the defaults of the options below that have one (their parser default is None, so that an option given without
#: --triton is seen and refused: ``given_without_triton``)
DEFAULTS: dict[str, Any] = {"instances": 1, "latency": "p50", "driver": "builtin", "window": 2.0, "stability": 0.10,
                            "max_windows": 10}
#: attribute -> flag of every option in this group except --triton itself
FLAGS: dict[str, str] = {"triton_model": "--model", "tritonserver": "--tritonserver", "instances": "--instances",
                         "concurrency": "--concurrency", "request_rate": "--request-rate", "latency": "--latency",
                         "driver": "--driver", "perf_analyzer": "--perf-analyzer", "window": "--window",
                         "stability": "--stability", "max_windows": "--max-windows"}


def given_without_triton(args: argparse.Namespace) -> list[str]:
    """The flags of this group given although ``--triton`` is not (they would be ignored)."""
    return [flag for name, flag in FLAGS.items() if getattr(args, name, None) is not None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("served model (instead of ONNX Runtime in this process; docs/verify.md; "
                                      "every option of this group needs --triton)")
    group.add_argument("--triton", metavar="URL|start", default=None,
                       help="gRPC URL of a Triton server on this machine, e.g. 127.0.0.1:8001 (with --model NAME); "
                            "or 'start': serve MODEL.onnx on a tritonserver started for the run (Python backend, "
                            "ONNX Runtime) and stop it afterwards")
    group.add_argument("--model", dest="triton_model", metavar="NAME", default=None, help="served model's name")
    group.add_argument("--tritonserver", metavar="PATH", default=None,
                       help="--triton start: this tritonserver binary (default: tritonserver on PATH, else "
                            "nvidia-pytriton's in .triton-venv)")
    group.add_argument("--instances", type=int, default=None, metavar="N",
                       help="--triton start: CPU instances of the served model (default 1)")
    group.add_argument("--concurrency", metavar="LIST", default=None,
                       help="requests in flight, comma-separated (default 1); a label of each row")
    group.add_argument("--request-rate", metavar="LIST", default=None,
                       help="open-loop Poisson request rates (requests/s) instead of --concurrency")
    group.add_argument("--latency", choices=("p50", "service"), default=None,
                       help="what latency_ms holds: p50 = the client's median latency of a request (default); "
                            "service = instances x batch x 1000 / throughput, the time per batch of one instance "
                            "under that load (with --concurrency 2 per instance: the batch latency a plan needs; "
                            "docs/verify.md)")
    group.add_argument("--driver", choices=("builtin", "perf_analyzer"), default=None,
                       help="load generator: builtin (tritonclient asyncio; default) or perf_analyzer")
    group.add_argument("--perf-analyzer", metavar="PATH", default=None, help="perf_analyzer binary")
    group.add_argument("--window", type=float, default=None, metavar="S", help="measurement window (default 2 s)")
    group.add_argument("--stability", type=float, default=None, metavar="FRACTION",
                       help="a point is stable when the last 3 windows' throughput and p99 are within this "
                            "fraction of their mean (default 0.10)")
    group.add_argument("--max-windows", type=int, default=None, metavar="N",
                       help="windows per point at most (default 10)")


def run(args: argparse.Namespace) -> int:
    from servopt.cli._output import check_output

    for name, value in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    if args.runtime != "onnxruntime" or args.dtype != "fp32" or args.find_max_batch or args.device != "cpu":
        raise ValidationError("--runtime, --dtype, --find-max-batch and --device do not apply with --triton (the "
                              "server runs the model)")
    batch_sizes = int_list("--batch-sizes", args.batch_sizes)
    plan = _load_plan(args)  # checked before a server starts
    if args.triton == "start":
        if not args.model:
            raise ValidationError("--triton start needs MODEL.onnx (the file to serve)")
        from pathlib import Path

        if not Path(args.model).is_file():  # before a server starts or a FLOP is counted
            raise ValidationError(f"MODEL {args.model}: no such ONNX file (the model to serve with --triton start)")
        if args.triton_model:
            raise ValidationError("--model NAME is for --triton URL; with --triton start the served name is "
                                  "--model-name (default: the file name's stem)")
        check_output(args.output, "-o", force=args.force or args.resume)
        return _run_started(args, batch_sizes, plan)
    if args.tritonserver or args.instances != 1:
        raise ValidationError("--tritonserver and --instances apply only with --triton start")
    if args.mem_pattern != "on":
        raise ValidationError("--mem-pattern off applies only with --triton start: a running server's model uses "
                              "what its config.pbtxt says (parameters enable_mem_pattern)")
    if not args.triton_model:
        raise ValidationError("--triton needs --model NAME (the served model to measure)")
    if args.model:
        raise ValidationError(f"give MODEL.onnx ({args.model}) with --triton start, or --triton URL --model NAME, "
                              "not both")
    check_output(args.output, "-o", force=args.force or args.resume)
    from servopt.measure import loadgen

    url = loadgen.check_local_url(args.triton)
    return _measure(args, url, args.triton_model, batch_sizes, plan, source=f"triton {url}")


def _load_plan(args: argparse.Namespace) -> LoadPlan:
    """The measurement settings, concurrencies and request rates (validated; perf_analyzer looked up)."""
    from servopt.measure import loadgen

    settings = loadgen.LoadSettings(window_s=args.window, stability=args.stability, max_windows=args.max_windows,
                                    warmup_s=min(args.window, 1.0))
    rates = _rates(args.request_rate) if args.request_rate else None
    concurrencies = int_list("--concurrency", args.concurrency) if args.concurrency else None
    if rates and concurrencies:
        raise ValidationError("give --concurrency or --request-rate, not both")
    if args.driver == "perf_analyzer" and loadgen.find_perf_analyzer(args.perf_analyzer) is None:
        raise ValidationError("--driver perf_analyzer: perf_analyzer not found (give --perf-analyzer PATH, put it on "
                              "PATH, or run scripts/perf_analyzer_env.sh; docs/verify.md)")
    return settings, concurrencies, rates


def _run_started(args: argparse.Namespace, batch_sizes: list[int], plan: LoadPlan) -> int:
    """Serve MODEL.onnx on a tritonserver of its own, measure it, stop the server (also on errors and Ctrl-C)."""
    from pathlib import Path

    from servopt.measure.loadgen import MeasurementError
    from servopt.measure.served_onnx import served_onnx
    from servopt.serving.tritonserver import TritonCheckError
    from servopt.triton.spec import safe_name

    cores = int_list("--cores", args.cores)
    sizes = int_list("--input-sizes", args.input_sizes) if args.input_sizes else [None]
    if len(cores) != 1 or len(sizes) != 1:
        raise ValidationError("--cores and --input-sizes take one value with --triton start (one served model)")
    name = args.model_name or safe_name(Path(args.model).stem)
    from servopt.measure.work_columns import WorkColumns, onnx_counter

    work = WorkColumns(lambda size: onnx_counter(Path(args.model))(size), Path(args.model).name)(sizes[0])
    if not args.quiet:
        print(f"starting a tritonserver with {args.model} as {name!r} (python backend, {args.instances} "
              f"instance(s), max_batch_size {max(batch_sizes)})", file=sys.stderr)
    try:
        with served_onnx(args.model, name=name, max_batch_size=max(batch_sizes), instances=args.instances,
                         threads=cores[0], input_size=sizes[0], tritonserver=args.tritonserver,
                         mem_pattern=args.mem_pattern == "on") as served:
            labels = {"mem_pattern": "off"} if args.mem_pattern == "off" else {}
            return _measure(args, served.url, name, batch_sizes, plan, source=f"triton start {args.model}",
                            columns={**work, **labels})
    except TritonCheckError as exc:  # the model did not load: exit 2 with the server's log, not a traceback
        raise MeasurementError(str(exc)) from None


def _measure(args: argparse.Namespace, url: str, model: str, batch_sizes: list[int], plan: LoadPlan, *,
             source: str, columns: dict[str, Any] | None = None) -> int:
    """Measure ``model`` at ``url`` over the batch sizes and loads; write the profile (atomically, at the end).
    ``columns``: added to every row (``gflops`` / ``param_mb`` / ``act_peak_mb`` of the served graph, and the ``mem_pattern`` label of
    a model servopt served with the pattern off)."""
    from servopt.measure import loadgen

    settings, concurrencies, rates = plan
    if args.driver == "perf_analyzer":
        driver = loadgen.PerfAnalyzerDriver(url, settings, binary=args.perf_analyzer)
    else:
        driver = loadgen.BuiltinDriver(url, settings, seed=args.seed)

    def show(p: loadgen.LoadPoint) -> None:
        if not args.quiet:
            load = f"concurrency {p.concurrency}" if p.concurrency else f"{p.request_rate:g} req/s"
            print(f"  batch {p.batch_size:>4} {load}: {p.throughput_rps:9.1f} items/s  p50 {p.latency_p50_ms:7.2f} ms"
                  f"  p99 {p.latency_p99_ms:7.2f} ms  spread {p.throughput_spread:5.1%}"
                  f"{'' if p.stable else '  (not stable)'}", file=sys.stderr)

    points = loadgen.profile_served(driver, model, batch_sizes, concurrencies=concurrencies, request_rates=rates,
                                    progress=show)
    rows = loadgen.profile_rows(points, hardware=args.hardware or "triton-cpu",
                                instances=loadgen.model_instances(url, model),
                                variant=args.variant, source=f"{source} ({driver.name})", latency=args.latency)
    for row in rows:
        row.update(columns or {})
    loadgen.write_profile_rows(rows, args.output, append=args.resume)
    print(f"wrote {args.output}: {len(rows)} rows ({model} on {url}, driver {driver.name})")
    return 0
