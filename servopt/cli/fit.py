"""``servopt fit``: fit performance models on profiles and report their cross-validated error."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError

DESCRIPTION = """Fit servopt's performance models on profiles (latency; warm-up, memory and capacity vs cores where the
profiles have them) and report, per target and per configuration (model, variant, hardware, input size, cores,
labels), the error on held-out points: each batch size (cores, for capacity) is left out in turn, the models are
fitted on the rest and predict it. A straight line in the batch size (in cores for capacity: InfAdapter's line),
fitted per configuration on the same points, is shown beside it. MAPE is a fraction in --json (0.05 = 5 %).
Existing -o / --plot files are refused unless --force (checked before fitting)."""

EPILOG = """examples:
  servopt fit profiles/nvidia_efficientnet_pytorch.csv
  servopt fit profiles/nvidia_resnet50_triton.csv --json
  servopt fit profiles/measured_resnet_like.csv -o models.joblib --plot latency.png
  servopt import infadapter data/infadapter/capacity_result_Feb_21.csv -o cap.csv
  servopt fit cap.csv --targets capacity --json     # capacity vs cores per variant, against InfAdapter's line
  servopt fit runs.csv --repeats mean               # many runs per point (a 'run' label): average them first
  servopt fit vit.csv --graph vit_b16=vit_b16.onnx  # FLOPs from the graph as the work of a batch"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profiles", metavar="PROFILE", nargs="+", help="profile files (.csv or .parquet)")
    parser.add_argument("-o", "--output", metavar="MODELS.joblib", help="save the fitted models (for servopt "
                        "predict)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--plot", metavar="FILE.png", help="plot held-out predictions per configuration (first "
                        "target to FILE.png, others to FILE-<target>.png)")
    parser.add_argument("--targets", help="comma-separated subset of latency,warmup,memory,capacity")
    parser.add_argument("--force", action="store_true", help="replace existing -o / --plot files")
    parser.add_argument("--latency-model", choices=("work", "hinge"), default="work",
                        help="work: per-configuration curves plus a floor-plus-roofline in the work of a batch "
                        "(batch x gflops where the profile or --graph gives FLOPs, else pixels x batch) for "
                        "unprofiled input sizes and larger batches (default); hinge: per-configuration curves only, "
                        "the model before issue 19. The warm-up model is a multiple of the same latency model")
    parser.add_argument("--memory-model", choices=("family", "line"), default="family",
                        help="family: a line in batch per configuration, and per family (configuration without the "
                        "input size) static + slope x batch x pixels for unprofiled input sizes (default); line: "
                        "per-configuration lines only, the model before issue 19")
    parser.add_argument("--oom-limit-mb", type=float, metavar="MIB",
                        help="the memory limit the profile's out-of-memory search ran under (servopt profile "
                        "--memory-limit-mb): calibrates the largest batch on the rows' oom_batch_size so that it "
                        "never exceeds the measured one, and reports the margin used. Default: the profile's "
                        "oom_limit_mb column (servopt profile writes it); for profiles without one (a limit that "
                        "differs from that column is refused)")
    parser.add_argument("--level", type=float, default=0.9, help="level of the prediction intervals saved with "
                        "-o (split conformal on the held-out residuals; default 0.9)")
    parser.add_argument("--repeats", choices=("run", "mean"), default="run",
                        help="rows that differ only in the 'run' label: run (default) fits each run as its own "
                        "configuration; mean averages the runs of each point first (far faster on profiles with "
                        "many runs: the per-configuration curve fits dominate)")
    from servopt.cli._graphs import GRAPH_HELP

    parser.add_argument("--graph", action="append", metavar="MODEL=FILE.onnx", help=GRAPH_HELP)
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress on stderr (it is shown only when stderr is a terminal, or with "
                             "SERVOPT_PROGRESS=1)")


def _size(paths: list[str]) -> str:
    total = 0
    for path in paths:
        try:
            total += Path(path).stat().st_size
        except OSError:
            pass
    return f"{total / 1e6:.1f} MB" if total >= 1e5 else f"{total / 1e3:.0f} kB"


def _pct(value: Any) -> str:
    return "    -" if value is None else f"{100 * value:5.1f}"


def _r2(value: Any) -> str:
    return "     -" if value is None else f"{value:6.3f}"


def _print_table(name: str, report: Any) -> None:
    summary = report.to_dict()
    print(f"{name}: {summary['model']} vs {summary['baseline']} ({summary['cv']})")
    rows = [(g_label, g) for g_label, g in ((grp.label, grp.metrics()) for grp in report.groups)]
    width = max([len(label) for label, _ in rows] + [13])
    print(f"  {'configuration'.ljust(width)}   n  MAPE %     R2  base MAPE %  base R2")
    for label, g in rows:
        print(f"  {label.ljust(width)} {g['n']:3d}  {_pct(g['mape'])}  {_r2(g['r2'])}        {_pct(g['baseline_mape'])}"
              f"   {_r2(g['baseline_r2'])}")
    print(f"  {'all held-out points'.ljust(width)} {summary['n_points']:3d}  {_pct(summary['mape'])}  "
          f"{_r2(summary['r2'])}        {_pct(summary['baseline_mape'])}   {_r2(summary['baseline_r2'])}")
    print(f"  {'mean over configurations'.ljust(width)}      {_pct(summary['mean_group_mape'])}"
          f"                {_pct(summary['baseline_mean_group_mape'])}")
    if summary["skipped_groups"]:
        what = "core count" if name == "capacity" else "batch size"
        print(f"  ({summary['skipped_groups']} configuration(s) with a single {what} not scored)")
    print()


def _check_outputs(args: argparse.Namespace, targets: list[str] | None) -> None:
    """Refuse existing or unwritable outputs before fitting (one rule for every writer: --force replaces)."""
    from servopt.cli._output import check_output

    if args.output:
        check_output(args.output, "-o", force=args.force)
    if args.plot:
        first = Path(args.plot)
        names = targets or ["latency", "warmup", "memory", "capacity"]
        # the first plotted target takes FILE.png, the others FILE-<target>.png: check every name it may take
        for path in [first] + [first.with_name(f"{first.stem}-{t}{first.suffix}") for t in names]:
            if path == first or path.exists():
                check_output(path, "--plot", force=args.force)
    if args.force and not (args.output or args.plot):
        raise ValidationError("--force only applies with -o or --plot (the files to write)")


def run(args: argparse.Namespace) -> int:
    from servopt.performance.evaluate import fit_profile
    from servopt.performance.uncertainty import NO_RESIDUALS, known
    from servopt.profiles import load_profile

    targets = None
    if args.targets:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.plot and Path(args.plot).suffix.lower() != ".png":
        raise ValidationError(f"--plot {args.plot}: expected a .png file name")
    _check_outputs(args, targets)
    from servopt.cli._graphs import add_graphs, parse_graphs

    graphs = parse_graphs(getattr(args, "graph", None))
    if not 0 < args.level < 1:
        raise ValidationError(f"--level {args.level}: expected a number between 0 and 1 (e.g. 0.9)")
    from servopt.progress import Progress

    with Progress("servopt fit", quiet=args.quiet) as bar:
        bar.stage(f"reading {len(args.profiles)} profile(s), {_size(args.profiles)}")
        table = load_profile(args.profiles)
        frame = table.frame
        if args.repeats == "mean":
            from servopt.profiles import average_runs

            bar.stage(f"averaging the runs of {len(frame):,} rows")
            frame = average_runs(frame, source=table.source)
        if graphs:
            bar.stage(f"counting the FLOPs of {len(graphs)} graph(s)")
            frame = add_graphs(frame, graphs, table.source)
        if args.latency_model == "hinge" and "gflops" in frame.columns:
            frame = frame.drop(columns="gflops")  # the hinge model does not use the work of a batch
        if args.oom_limit_mb is not None and not args.oom_limit_mb > 0:
            raise ValidationError(f"--oom-limit-mb {args.oom_limit_mb}: expected a number of MiB > 0")
        models, reports = fit_profile(frame, source=table.source, targets=targets,
                                      latency_model=args.latency_model, level=args.level,
                                      memory_model=args.memory_model, oom_limit_mb=args.oom_limit_mb,
                                      progress=bar)
        if args.output:
            bar.stage("saving the models")
            models.save(args.output)
        if args.plot and reports:
            from servopt.performance.plot import plot_report

            first = Path(args.plot)
            bar.stage("plotting", len(reports))
            for i, (name, report) in enumerate(reports.items()):
                path = first if i == 0 else first.with_name(f"{first.stem}-{name}{first.suffix}")
                plot_report(report, models, path)
                bar.advance()
    not_scored = [t for t in models.targets if t not in reports]
    for name in not_scored:
        print(f"servopt fit: note: {name} fitted but not cross-validated (no configuration has two or more "
              f"{'core counts' if name == 'capacity' else 'batch sizes'} to hold out)", file=sys.stderr)
    oom = _oom_report(models, args.oom_limit_mb)
    if args.json:
        out = {name: {**report.to_dict(), "interval": models.targets[name].interval}
               for name, report in reports.items()}
        if oom is not None:
            out.setdefault("memory", {})["oom_calibration"] = oom
        print(json.dumps(out, indent=2))
    else:
        for name, report in reports.items():
            _print_table(name, report)
            iv = models.targets[name].interval
            if iv and not known(iv["interior"]):
                refused = " and a problem's latency_quantile is refused" if name == "latency" else ""
                print(f"  {100 * iv['level']:.0f} % prediction interval: unknown: {NO_RESIDUALS}. servopt predict "
                      f"--intervals gives NaN (null in --json){refused}\n")
            elif iv:
                per = (f" (beyond the profiled batches: {iv['octave']['lo']:.3f}-{iv['octave']['hi']:.3f} per "
                       f"octave, to the power of the distance)" if "octave" in iv else "")
                sizes = (f"; at an unprofiled input size (each size held out) {iv['size']['lo']:.3f}-"
                         f"{iv['size']['hi']:.3f} between the profiled sizes, {iv['size_edge']['lo']:.3f}-"
                         f"{iv['size_edge']['hi']:.3f} beyond them" if "size" in iv else "")
                print(f"  {100 * iv['level']:.0f} % prediction interval (x prediction): inside the profiles "
                      f"{iv['interior']['lo']:.3f}-{iv['interior']['hi']:.3f}, extrapolating "
                      f"{iv['edge']['lo']:.3f}-{iv['edge']['hi']:.3f}{per}{sizes}\n")
        if oom is not None:
            _print_oom(oom)
        if args.output:
            print(f"models saved to {args.output} ({', '.join(models.targets)})")
        if args.plot and reports:
            print(f"plot written to {args.plot}")
    return 0


def _oom_report(models: Any, limit: float | None) -> dict[str, Any] | None:
    """The out-of-memory calibration of the memory model (``--oom-limit-mb``, else the limits the profile
    records), or None without one."""
    fitted = models.targets.get("memory")
    if fitted is None:
        return None
    model = fitted.model
    bounds = len(getattr(model, "calibration_", []))
    if limit is None:
        from servopt.performance.oom import boundary_limits

        recorded = boundary_limits(model)
        if not recorded:
            return None
        limit = recorded[0] if len(recorded) == 1 else recorded
    return {"memory_limit_mb": limit, "boundaries": bounds, "calibrated": bounds > 0,
            "oom_margin": getattr(model, "oom_margin_", None), "families": model.margins(),
            "default_usable_fraction": getattr(model, "default_fraction_", 1.0),
            "uncalibrated_families": _uncalibrated_families(model),
            "pressure_rows": getattr(model, "pressure_rows", "drop")}


def _uncalibrated_families(model: Any) -> int:
    """How many families (configurations without the input size) of the fitted memory model no boundary
    calibrated: their largest batch uses ``default_usable_fraction`` of the limit."""
    import math

    size = getattr(model, "size_index_", None)
    groups = getattr(model, "group_index_", [])
    key = lambda k: tuple("nan" if math.isnan(v) else v for v in k)  # noqa: E731
    families = {key(tuple(v for i, v in zip(groups, k) if i != size)) for k in getattr(model, "lines_", {})}
    return len(families - {key(k) for k in getattr(model, "usable_fraction_", {})})


def _print_oom(oom: dict[str, Any]) -> None:
    if not oom["boundaries"]:
        limit = f"{oom['memory_limit_mb']:g}"
        print(f"memory: the out-of-memory margin is UNCALIBRATED (limit {limit} MiB): no out-of-memory boundary "
              f"(oom_batch_size) in the profiles.\n  No margin is held back: the largest batch predicted under the "
              f"limit fills it with the memory model's prediction and may exceed the batch that really fits.\n  "
              f"Measure the boundaries with servopt profile --memory-limit-mb {limit} --find-max-batch.\n")
        return
    limits = oom["memory_limit_mb"] if isinstance(oom["memory_limit_mb"], list) else [oom["memory_limit_mb"]]
    print(f"memory: largest batch calibrated on {oom['boundaries']} out-of-memory boundaries under "
          f"{', '.join(f'{v:g}' for v in limits)} MiB; oom_margin {oom['oom_margin']:+.4f} (share of a limit held back; "
          f"negative: the model over-predicts memory near the limit)")
    print("  rows above half the limit: " + (
        "left out of the configurations' lines (memory_mb is the caching allocator's reserved peak, which it "
        "lowers near a limit it enforces)" if oom.get("pressure_rows") == "drop" else
        "kept in the configurations' lines (the profiler only observed the limit: memory near it is measured as "
        "without one)"))
    width = max(len(f["family"]) for f in oom["families"])
    print(f"  {'family'.ljust(width)}  boundaries  usable fraction: profiled, other limits  other sizes  margin  "
          f"beyond, per octave: above  below")
    for fam in oom["families"]:
        other = fam.get("unprofiled_fraction")
        other = f"{other:11.4f}" if other is not None else f"{'-':>11}"
        rates = fam.get("shortfall_per_octave") or {}
        beyond = "  ".join(f"{rates[d]:.4f}".rjust(w) if d in rates else "-".rjust(w)
                           for d, w in (("up", 26), ("down", 5)))
        print(f"  {fam['family'].ljust(width)}  {fam['boundaries']:10d}  {fam['usable_fraction']:38.4f}  {other}  "
              f"{fam['oom_margin']:+.4f}  {beyond}")
    print("  (a profiled size with a boundary of its own uses its own fraction under the limit it was measured at: "
          "its largest batch there is the measured one; other limits: the family's smallest ratio less the spread; "
          "other sizes: the family line fitted without each boundary's size, the smallest ratio; beyond the profiled "
          "sizes at most the family's median ratio (at most 1) less the shortfall per octave that the edge size left "
          "out showed x the octaves beyond; "
          "servopt predict --memory-limit-mb gives each query's largest batch and margin)")
    single = [f["family"] for f in oom["families"] if f.get("input_sizes", 2) == 1]
    if single:
        print(f"  {len(single)} famil{'y' if len(single) == 1 else 'ies'} calibrated at one input size only "
              f"({', '.join(single[:3])}{', ...' if len(single) > 3 else ''}): no size to leave out, so at other "
              f"input sizes the largest batch may exceed the one that fits; measure a boundary at a second size "
              f"(servopt profile --input-sizes A,B --memory-limit-mb ...)")
    if oom["uncalibrated_families"]:
        default, n = oom["default_usable_fraction"], oom["uncalibrated_families"]
        one = n == 1
        print(f"  {n} other famil{'y' if one else 'ies'} without a boundary: margin UNCALIBRATED; "
              f"{'it uses' if one else 'they use'} the usable fraction {default:.4f} (margin {1 - default:+.4f}), "
              f"not measured for {'it' if one else 'them'}, and may exceed the batch that really fits")
    print()
