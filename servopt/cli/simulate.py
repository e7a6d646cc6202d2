"""``servopt simulate PROBLEM.yaml --trace FILE``: solve a problem and simulate its plan serving a request trace."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import Any

DESCRIPTION = """Solve a variant_selection or pipeline problem and simulate the plan serving a request trace.

Requests arrive as a Poisson process whose rate follows the trace (one rate per second); they are served with
dynamic batching (batch size, max queue delay), replicas and per-batch latencies from the problem's performance
tables, and dropped when they have not started by the drop deadline (default: the SLO). See docs/simulator.md
for the service models (a variant on n cores; a pipeline stage).

Traces: whitespace-separated numbers (.txt), CSV with an `rps` column (.csv), or either inside a compressed
archive (.tbz2, .tar.gz, .bz2, .gz; read in memory, never extracted), optionally sliced and damped as IPA does.
A CSV time column (second, minute, hour or timestamp) is honoured: rows are sorted by it, a repeated or missing
time is refused, and a row longer than a second holds its rate for every second it covers (docs/simulator.md).

Output: a table for people, or with --json exactly one JSON object:
  {"mean_ms", "p50_ms", "p99_ms", "slo_violation_rate", "served", "dropped", "average_accuracy", "core_seconds"}"""

EPILOG = """examples:
  servopt simulate examples/pipeline_video.yaml --trace data/ipa/traces/twitter_slice_bursty_damping8.csv
  servopt simulate examples/variant_selection_infadapter.yaml --slo-ms 750 \\
      --trace data/infadapter/twitter_window_day15_min82-103_per_second.txt --json
  servopt simulate P.yaml --trace data/twitter_workload_2021-08.tbz2 \\
      --trace-start 1301160 --trace-end 1302360 --damping 8

exit codes: 0 simulated; 1 the problem has no plan (infeasible); 2 bad input or usage"""


def option_type(expected: str, ok: Callable[[float], bool], *, integer: bool = False,
                words: tuple[str, ...] = ()) -> Callable[[str], Any]:
    """An argparse ``type=`` that reads a number (an integer with ``integer``) for which ``ok`` holds, or one of
    ``words``; anything else is a usage error naming the option: ``argument --interval: expected ..., got '-5'``.

    >>> option_type("a number > 0", lambda x: x > 0)("2.5")
    2.5
    >>> option_type("a number > 0", lambda x: x > 0)("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a number > 0, got '-1'
    """
    def convert(text: str) -> Any:
        if text in words:
            return text
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    convert.__name__ = expected  # argparse names the type by it in its own messages
    return convert


def add_trace_arguments(parser: argparse.ArgumentParser, *, positional: bool) -> None:
    """Trace options shared by ``simulate`` and ``replay``."""
    if not positional:
        parser.add_argument("--trace", required=True, metavar="FILE", help="per-second request-rate trace")
    g = parser.add_argument_group("trace")
    g.add_argument("--trace-start", type=option_type("a whole second >= 0", lambda x: x >= 0, integer=True),
                   default=None, metavar="S", help="first second to use (counted from the trace's first second)")
    g.add_argument("--trace-end", type=option_type("a whole second >= 1", lambda x: x >= 1, integer=True),
                   default=None, metavar="S", help="second to stop before")
    g.add_argument("--damping", type=option_type("a number > 0", lambda x: x > 0), default=None, metavar="F",
                   help="divide rates by F and round down (IPA's damping_factor)")
    g.add_argument("--column", default=None, metavar="NAME", help="CSV column of the rate (default rps)")


def add_serving_arguments(parser: argparse.ArgumentParser) -> None:
    """Simulation options shared by ``simulate`` and ``replay``."""
    g = parser.add_argument_group("simulation")
    g.add_argument("--seed", type=option_type("an integer >= 0", lambda x: x >= 0, integer=True), default=0,
                   metavar="N", help="seed of arrivals and routing (default 0)")
    g.add_argument("--slo-ms", type=option_type("a number of milliseconds > 0", lambda x: x > 0), default=None,
                   metavar="MS",
                   help="latency SLO (default: a pipeline's sla_ms, a variant_selection file's performance.sla_ms)")
    g.add_argument("--timeout-ms", default="slo", metavar="MS",
                   help="drop a request not started by this age; 'slo' (default) or 'none' (never drop)")
    g.add_argument("--headroom", type=option_type("a fraction in (0, 1]", lambda x: 0 < x <= 1), default=None,
                   metavar="F",
                   help="variant_selection only: capacity th(n) is this share of the pod's saturation (default 0.8)")
    g.add_argument("--servers", choices=("per_core", "single"), default=None,
                   help="variant_selection only: a pod on n cores is n servers (per_core, default) or one")
    g.add_argument("--backend", default="auto", metavar="NAME", help="solver backend (default auto)")


def serving_flags(problem: Any, path: str, args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of ``deployment_from_plan`` that ``--headroom``/``--servers`` give; either flag with a problem
    whose plans they do not shape (a pipeline) is refused rather than ignored."""
    from servopt.exceptions import ValidationError
    from servopt.serving.deployment import serving_options

    options = serving_options(problem, 0.8 if args.headroom is None else args.headroom,
                              "per_core" if args.servers is None else args.servers)
    given = [flag for flag, value in (("--headroom", args.headroom), ("--servers", args.servers)) if value is not None]
    if given and not options:
        raise ValidationError(f"{given[0]} only applies to variant_selection problems (how a pod on n cores "
                              f"serves); {path} is a {problem.kind} problem")
    return options


def read_trace_args(args: argparse.Namespace) -> Any:
    from servopt.serving.traces import read_trace

    return read_trace(args.trace, start=args.trace_start, end=args.trace_end, damping=args.damping,
                      column=args.column)


def timeout_arg(value: str) -> float | str | None:
    from servopt.exceptions import ValidationError

    if value in ("slo", "none"):
        return None if value == "none" else "slo"
    try:
        ms = float(value)
    except ValueError:
        ms = math.nan
    if not (math.isfinite(ms) and ms > 0):
        raise ValidationError(f"--timeout-ms: expected a number of milliseconds > 0, 'slo' or 'none', got {value!r}")
    return ms


def slo_for(problem: Any, path: str, slo_ms: float | None) -> float:
    """The SLO: --slo-ms, else the pipeline's ``sla_ms``, else a variant_selection file's ``performance.sla_ms``."""
    from servopt.exceptions import ValidationError

    if slo_ms is not None:
        if not (math.isfinite(slo_ms) and slo_ms > 0):
            raise ValidationError(f"--slo-ms: expected a number > 0, got {slo_ms!r}")
        return float(slo_ms)
    own = getattr(problem, "sla_ms", None)
    if own is not None:
        return float(own)
    from servopt.documents import load_document

    try:
        doc = load_document(path)  # the problem file's own reader (YAML 1.2 numbers), already read once
    except ValidationError:
        doc = None
    perf = doc.get("performance") if isinstance(doc, dict) else None
    if isinstance(perf, dict) and isinstance(perf.get("sla_ms"), (int, float)):
        return float(perf["sla_ms"])
    raise ValidationError(
        f"{path}: a {problem.kind} problem carries no latency SLO (it is built into the capacity table); "
        "pass --slo-ms (InfAdapter's capacity profile uses 750)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="PROBLEM", help="problem file (YAML): variant_selection or pipeline")
    add_trace_arguments(parser, positional=False)
    add_serving_arguments(parser)
    parser.add_argument("--policy", default=None, metavar="NAME",
                        help="plan with a baseline policy (ms+, greedy, fa2, rim, bruteforce) instead of the solver")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")


def run(args: argparse.Namespace) -> int:
    import sys

    import servopt
    from servopt.exceptions import ValidationError
    from servopt.formulations.registry import load_problem
    from servopt.serving.deployment import servable
    from servopt.serving.simulate import deployment_from_plan, simulate

    problem = load_problem(args.file)
    if not servable(problem):
        raise ValidationError(f"{args.file}: servopt simulate serves request streams of variant_selection and "
                              f"pipeline plans; a {problem.kind} plan is a batch job")
    flags = serving_flags(problem, args.file, args)
    slo = slo_for(problem, args.file, args.slo_ms)
    timeout = timeout_arg(args.timeout_ms)
    trace = read_trace_args(args)
    if args.policy is not None:
        if args.backend != "auto":
            raise ValidationError("give either --policy NAME or --backend NAME, not both")
        from servopt.policies import run_policy

        solution = run_policy(problem, args.policy)
    else:
        solution = servopt.solve(problem, backend=args.backend)
    if solution.plan is None:
        print(f"servopt: no plan to simulate ({solution.status.value}): {solution.message}", file=sys.stderr)
        if args.json:
            from servopt.cli._output import print_json_status

            print_json_status(solution.status.value, 1, f"no plan to simulate: {solution.message}")
        return 1
    options: dict[str, Any] = {"slo_ms": slo}
    options.update(flags)
    deployment = deployment_from_plan(problem, solution.plan, **options)
    report = simulate(deployment, trace, slo_ms=slo, seed=args.seed, timeout_ms=timeout)
    if args.json:
        print(json.dumps(report.to_dict(), allow_nan=False))
        return 0
    print(f"{problem.kind} plan ({solution.status.value}, backend {solution.backend}), simulated as "
          f"{describe(deployment)}")
    print(f"trace {trace.source}: {trace.duration_s} s, {report.requests} requests, SLO {slo:g} ms, "
          f"simulated in {report.wall_seconds:.2f} s")
    for key, value in report.to_dict().items():
        print(f"  {key:<20} {_fmt(value)}")
    return 0


def describe(deployment: Any) -> str:
    """What the simulator runs, pool by pool: servers, cores per server, batch size.

    A variant_selection plan's pod on 13 cores is ``13 servers x 1 core`` (``--servers per_core``) or
    ``1 server x 13 cores`` (``single``); a pipeline stage is its replicas.

    >>> from servopt.serving.deployment import ServerPool, SimulatedDeployment
    >>> describe(SimulatedDeployment.parallel([ServerPool("resnet50", latency_s=0.1, cores=13)]))
    'resnet50: 1 server x 13 cores, batch 1'
    """
    def pool(p: Any) -> str:
        cores = f" x {p.cores:g} core{'' if p.cores == 1 else 's'}" if p.cores > 0 else ""
        return f"{p.name}: {p.replicas} server{'' if p.replicas == 1 else 's'}{cores}, batch {p.batch_size}"

    return " -> ".join(" | ".join(pool(p) for p, w in zip(pools, ws) if w > 0)
                       for pools, ws in zip(deployment.stages, deployment.weights))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
