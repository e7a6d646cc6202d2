"""``servopt replay TRACE PROBLEM.yaml --policy P --interval S``: re-plan along a trace and simulate."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from servopt.atomic import atomic_write
from servopt.cli.simulate import (
    _fmt,
    add_serving_arguments,
    add_trace_arguments,
    option_type,
    read_trace_args,
    serving_flags,
    slo_for,
    timeout_arg,
)

DESCRIPTION = """Replay a request trace against an adaptation policy: every --interval seconds the policy forecasts
the load from the requests seen so far, re-plans the problem (variant_selection or pipeline) and the simulator
serves the requests between decisions with the deployment in force (see docs/replay.md).

Policies: servopt (the exact MILP), ms+ (InfAdapter's single-variant baseline), greedy, fa2, rim (IPA's
baselines), bruteforce, and static (one plan for the trace's peak, never changed). Several policies may be
given separated by commas; they all see the same arrivals (same --seed).

Output: a table per policy (SLO violations, latency, accuracy, cores, reconfigurations, decision time), or with
--json one object {"trace", "problem", "interval_s", "policies": [...]}; --series FILE writes the per-interval
numbers (CSV) for plots (an existing FILE is refused unless --force).

Arguments: TRACE PROBLEM; PROBLEM TRACE (the order of `servopt simulate PROBLEM --trace TRACE`) is accepted too,
recognised by the problem file's `problem:` key."""

EPILOG = """examples:
  # InfAdapter's setting: the 21-minute Twitter window, 30 s decisions, EWMA of per-minute peaks + 10 %
  servopt replay data/infadapter/twitter_window_day15_min82-103_per_second.txt \\
      examples/variant_selection_infadapter_fit.yaml --policy servopt,ms+,static --interval 30 \\
      --forecaster ewma --bucket 60 --margin 0.1 --scale-down-delay 120 --slo-ms 750
  # IPA's setting: a bursty window, 10 s decisions, max of the last 2 minutes
  servopt replay data/ipa/traces/twitter_slice_bursty_damping8.csv examples/pipeline_video.yaml \\
      --policy servopt,fa2,rim,static --interval 10 --forecaster max --window 120

exit codes: 0 replayed; 2 bad input or usage (e.g. a policy that does not apply to the problem)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", metavar="TRACE", help="per-second request-rate trace (PROBLEM TRACE, simulate's "
                        "order, is accepted too: the file with a `problem:` key is the problem)")
    parser.add_argument("file", metavar="PROBLEM", help="problem file (YAML): variant_selection or pipeline")
    parser.add_argument("--policy", default="servopt", metavar="P[,P...]",
                        help="servopt, ms+, greedy, fa2, rim, bruteforce, static (comma-separated; default servopt)")
    parser.add_argument("--interval", type=option_type("seconds > 0", lambda x: x > 0), default=30.0, metavar="S",
                        help="seconds between decisions (InfAdapter 30, IPA 10; default 30)")
    add_trace_arguments(parser, positional=True)
    add_serving_arguments(parser)
    f = parser.add_argument_group("forecast and stabilisation (re-planning policies: every policy but static)")
    f.add_argument("--forecaster", choices=("last", "ewma", "max"), default=None,
                   help="last value, EWMA, or max of a window (default last)")
    f.add_argument("--window", type=option_type("a whole number of seconds >= 1", lambda x: x >= 1, integer=True),
                   default=None, metavar="S", help="--forecaster max only: the window (default 120)")
    f.add_argument("--span", type=option_type("a number >= 1", lambda x: x >= 1), default=None, metavar="N",
                   help="--forecaster ewma only: the span (default 10)")
    f.add_argument("--bucket", type=option_type("a whole number of seconds >= 1", lambda x: x >= 1, integer=True),
                   default=None, metavar="S",
                   help="--forecaster ewma only: over the maxima of S-second buckets (InfAdapter: 60; default 1)")
    f.add_argument("--margin", type=option_type("a number > -1 (0.1 = +10 %)", lambda x: x > -1), default=None,
                   metavar="F", help="add F to the forecast (0.1 = +10 %%; default 0)")
    f.add_argument("--scale-down-delay", type=option_type("seconds >= 0", lambda x: x >= 0), default=None,
                   metavar="S",
                   help="act on a lower forecast only after S seconds of lower forecasts (InfAdapter: 120; default 0)")
    f.add_argument("--min-change", type=option_type("a fraction in [0, 1)", lambda x: 0 <= x < 1), default=None,
                   metavar="F", help="keep the plan while the forecast is within F (relative) of the planned load "
                   "(default 0)")
    f.add_argument("--prefer-stable", action="store_true",
                   help="among optimal plans, prefer the one that changes the fewest things")
    f.add_argument("--static-rps", type=option_type("max, mean or a number > 0", lambda x: x > 0,
                                                    words=("max", "mean")),
                   default=None, metavar="RPS", help="--policy static only: the load it plans for: max (default), "
                   "mean or a number")
    f.add_argument("--apply-delay", type=option_type("seconds >= 0 or 'load'", lambda x: x >= 0, words=("load",)),
                   default=None, metavar="S",
                   help="a new plan serves requests from decision + S seconds; 'load' = its model loading time "
                   "(default 0)")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    parser.add_argument("--series", metavar="FILE", default=None, help="write per-interval numbers to FILE (CSV)")
    parser.add_argument("--force", action="store_true", help="replace an existing --series FILE")


def run(args: argparse.Namespace) -> int:
    from servopt.serving.adapt import POLICIES, make_forecaster, replay
    from servopt.exceptions import ValidationError
    from servopt.serving.deployment import servable
    from servopt.formulations.registry import load_problem

    from servopt.cli._output import check_output

    if args.series is not None:  # before any work: a refused output leaves nothing behind
        check_output(args.series, "--series", force=args.force)
    elif args.force:
        raise ValidationError("--force only applies with --series FILE (the file to write)")
    if _is_problem_file(args.trace) and not _is_problem_file(args.file):
        # `replay PROBLEM TRACE` (simulate's order): unambiguous, so accepted
        args.trace, args.file = args.file, args.trace
    elif _is_problem_file(args.trace):
        raise ValidationError(f"{args.trace}: a problem file where the trace goes; servopt replay takes TRACE PROBLEM")
    problem = load_problem(args.file)
    if not servable(problem):
        raise ValidationError(f"{args.file}: servopt replay adapts variant_selection and pipeline problems, "
                              f"not {problem.kind}")
    policies = [p.strip() for p in args.policy.split(",") if p.strip()]
    unknown = [p for p in policies if p not in POLICIES]
    if not policies or unknown:
        raise ValidationError(f"--policy: unknown policy {', '.join(unknown) or '(none)'}; "
                              f"expected {', '.join(POLICIES)}")
    check_applicable(args, policies)
    options = serving_flags(problem, args.file, args)
    slo = slo_for(problem, args.file, args.slo_ms)
    trace = read_trace_args(args)
    forecaster = make_forecaster(_or(args.forecaster, "last"), window_s=_or(args.window, 120),
                                 span=_or(args.span, 10.0), bucket_s=_or(args.bucket, 1), margin=_or(args.margin, 0.0))
    apply_delay = _or(args.apply_delay, 0.0)
    results = []
    for policy in policies:
        results.append(replay(
            problem, trace, policy=policy, interval_s=args.interval, forecaster=forecaster, seed=args.seed,
            slo_ms=slo, timeout_ms=timeout_arg(args.timeout_ms), scale_down_delay_s=_or(args.scale_down_delay, 0.0),
            min_change=_or(args.min_change, 0.0), prefer_stable=args.prefer_stable, backend=args.backend,
            static_rps=_or(args.static_rps, "max"), apply_delay=apply_delay, **options,
        ))
    if args.series is not None:
        write_series(args.series, results)
    if args.json:
        out = {"trace": trace.source, "problem": problem.kind, "interval_s": args.interval, "slo_ms": slo,
               "policies": [_clean(r.summary()) for r in results]}
        print(json.dumps(out, allow_nan=False))
        return 0
    print(f"{problem.kind} {args.file}; trace {trace.source}: {trace.duration_s} s; decisions every "
          f"{args.interval:g} s; SLO {slo:g} ms")
    print(format_summary([r.summary() for r in results]))
    return 0


def check_applicable(args: argparse.Namespace, policies: list[str]) -> None:
    """Refuse options that the chosen policies and forecaster would ignore, naming the option and why."""
    from servopt.exceptions import ValidationError

    if args.static_rps is not None and "static" not in policies:
        raise ValidationError(f"--static-rps only applies with --policy static (the load its one plan is made for); "
                              f"--policy is {args.policy}")
    if all(p == "static" for p in policies):
        replanning = (("--forecaster", args.forecaster), ("--window", args.window), ("--span", args.span),
                      ("--bucket", args.bucket), ("--margin", args.margin),
                      ("--scale-down-delay", args.scale_down_delay), ("--min-change", args.min_change),
                      ("--apply-delay", args.apply_delay))
        given = [flag for flag, value in replanning if value is not None]
        if given:
            raise ValidationError(f"{given[0]} does not apply to --policy static: it plans once, for --static-rps, "
                                  "and never forecasts or re-plans; add a re-planning policy (e.g. servopt,static)")
    forecaster = _or(args.forecaster, "last")
    for flag, value, owner in (("--window", args.window, "max"), ("--span", args.span, "ewma"),
                               ("--bucket", args.bucket, "ewma")):
        if value is not None and forecaster != owner:
            default = " (the default)" if args.forecaster is None else ""
            raise ValidationError(f"{flag} only applies with --forecaster {owner}; the forecaster is "
                                  f"{forecaster}{default}")
    if args.backend != "auto" and not {"servopt", "static"} & set(policies):
        raise ValidationError(f"--backend only applies to the policies that solve the problem (servopt, static); "
                              f"--policy {args.policy} plans without a solver")


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


#: (column, key, format) of the table
_COLUMNS = (
    ("policy", "policy", "{}"),
    ("slo_viol_%", "slo_violation_rate", "{:.2f}"),
    ("dropped", "dropped", "{}"),
    ("p99_ms", "p99_ms", "{:.0f}"),
    ("accuracy", "average_accuracy", "{:.4f}"),
    ("mean_cores", "mean_cores", "{:.2f}"),
    ("core_s", "core_seconds", "{:.0f}"),
    ("reconfig", "reconfigurations", "{}"),
    ("decide_ms", "decision_mean_ms", "{:.1f}"),
    ("max_ms", "decision_max_ms", "{:.1f}"),
)


def _is_problem_file(path: str) -> bool:
    """Whether ``path`` reads as a problem file: a small YAML/JSON mapping with a ``problem:`` key."""
    import os

    import yaml

    try:
        if os.path.getsize(path) > 4 << 20:  # traces can be large; problem files are not
            return False
        with open(path, "rb") as fh:
            doc = yaml.safe_load(fh)
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return False
    return isinstance(doc, dict) and "problem" in doc


def format_summary(rows: list[dict[str, Any]]) -> str:
    """The per-policy table (SLO violations in percent)."""
    cells = [[c for c, _, _ in _COLUMNS]]
    for row in rows:
        line = []
        for _, key, fmt in _COLUMNS:
            v = row.get(key)
            if key == "slo_violation_rate" and v is not None:
                v = 100.0 * v
            line.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def write_series(path: str, results: list[Any]) -> None:
    """Per-interval numbers of every policy to one CSV (written atomically)."""
    import csv
    import io

    keys = ("start_s", "observed_rps", "forecast_rps", "cores", "violations", "p99_ms", "accuracy", "requests")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("policy",) + keys)
    for r in results:
        series = r.series()
        for i in range(series["start_s"].size):
            w.writerow([r.policy] + [_fmt(_num(series[k][i])) for k in keys])
    with atomic_write(path, "w", make_parents=True) as fh:
        fh.write(buf.getvalue())


def _num(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and math.isnan(v) else v


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
