"""``servopt profile --triton URL --model NAME``: measure a served model into a profile (the branch of
``servopt profile`` that talks to a Triton server instead of running ONNX Runtime; see docs/verify.md)."""

from __future__ import annotations

import argparse
import sys

from servopt.exceptions import ValidationError


def _int_list(flag: str, text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValidationError(f"{flag}: expected comma-separated positive integers like 1,2,4, got {text!r}")
    return [int(p) for p in parts]


def _rates(text: str) -> list[float]:
    try:
        rates = [float(p) for p in text.split(",")]
    except ValueError:
        rates = []
    if not rates or not all(0 < r <= 1e6 for r in rates):
        raise ValidationError(f"--request-rate: expected comma-separated rates > 0 like 10,20.5, got {text!r}")
    return rates


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("served model (instead of MODEL.onnx; docs/verify.md)")
    group.add_argument("--triton", metavar="URL", default=None,
                       help="gRPC URL of a Triton server on this machine, e.g. 127.0.0.1:8001")
    group.add_argument("--model", dest="triton_model", metavar="NAME", default=None, help="served model's name")
    group.add_argument("--concurrency", metavar="LIST", default=None,
                       help="requests in flight, comma-separated (default 1); a label of each row")
    group.add_argument("--request-rate", metavar="LIST", default=None,
                       help="open-loop Poisson request rates (requests/s) instead of --concurrency")
    group.add_argument("--driver", choices=("builtin", "perf_analyzer"), default="builtin",
                       help="load generator: builtin (tritonclient asyncio) or perf_analyzer")
    group.add_argument("--perf-analyzer", metavar="PATH", default=None, help="perf_analyzer binary")
    group.add_argument("--window", type=float, default=2.0, metavar="S", help="measurement window (default 2 s)")
    group.add_argument("--stability", type=float, default=0.10, metavar="FRACTION",
                       help="a point is stable when the last 3 windows' throughput and p99 are within this "
                            "fraction of their mean (default 0.10)")
    group.add_argument("--max-windows", type=int, default=10, metavar="N", help="windows per point at most")


def run(args: argparse.Namespace) -> int:
    from servopt.cli._output import check_output
    from servopt.measure import loadgen

    if not args.triton_model:
        raise ValidationError("--triton needs --model NAME (the served model to measure)")
    if args.model:
        raise ValidationError(f"give MODEL.onnx ({args.model}) or --triton, not both")
    check_output(args.output, "-o", force=args.force or args.resume)
    url = loadgen.check_local_url(args.triton)
    settings = loadgen.LoadSettings(window_s=args.window, stability=args.stability, max_windows=args.max_windows,
                                    warmup_s=min(args.window, 1.0))
    if args.driver == "perf_analyzer":
        driver = loadgen.PerfAnalyzerDriver(url, settings, binary=args.perf_analyzer)
    else:
        driver = loadgen.BuiltinDriver(url, settings, seed=args.seed)
    rates = _rates(args.request_rate) if args.request_rate else None
    concurrencies = _int_list("--concurrency", args.concurrency) if args.concurrency else None
    if rates and concurrencies:
        raise ValidationError("give --concurrency or --request-rate, not both")

    def show(p: loadgen.LoadPoint) -> None:
        if not args.quiet:
            load = f"concurrency {p.concurrency}" if p.concurrency else f"{p.request_rate:g} req/s"
            print(f"  batch {p.batch_size:>4} {load}: {p.throughput_rps:9.1f} items/s  p50 {p.latency_p50_ms:7.2f} ms"
                  f"  p99 {p.latency_p99_ms:7.2f} ms  spread {p.throughput_spread:5.1%}"
                  f"{'' if p.stable else '  (not stable)'}", file=sys.stderr)

    points = loadgen.profile_served(driver, args.triton_model, _int_list("--batch-sizes", args.batch_sizes),
                                    concurrencies=concurrencies, request_rates=rates, progress=show)
    rows = loadgen.profile_rows(points, hardware=args.hardware or "triton-cpu",
                                instances=loadgen.model_instances(url, args.triton_model),
                                variant=args.variant, source=f"triton {url} ({driver.name})")
    loadgen.write_profile_rows(rows, args.output, append=args.resume)
    print(f"wrote {args.output}: {len(rows)} rows ({args.triton_model} on {url}, driver {driver.name})")
    return 0
