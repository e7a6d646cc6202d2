"""``servopt bench NAME``: run one of the committed benchmark scripts (``benchmarks/*.py``)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DESCRIPTION = """Run a benchmark of servopt's checkout: each is one script under benchmarks/ that writes a CSV and a
PNG under benchmarks/results/ (summarised in docs/benchmarks.md). --quick runs tiny sizes once (a smoke test) and
writes to a new temporary folder, named on stderr, unless --out says otherwise, so the committed results (and the
docs' images) stay as they are. The scripts do the same when run directly with --quick.

The scripts are not part of the installed package: this command needs a servopt source checkout (an editable
install), or --dir pointing at its benchmarks/ folder."""

EPILOG = """examples:
  servopt bench --list
  servopt bench pipeline            # IPA's grid and beyond, every backend (a few minutes)
  servopt bench variants --quick --out /tmp/bench
  servopt bench gpus --args="--runs 5 --time-limit 10"   # passed to the script as they are"""


@dataclass(frozen=True)
class Benchmark:
    """A script, what it measures, its quick arguments, and whether this command passes it ``--out DIR``.

    A script with ``takes_out=False`` must choose a temporary folder itself for its quick arguments (as every
    script in benchmarks/ does for ``--quick``).
    """

    script: str
    summary: str
    quick: tuple[str, ...] = ("--quick",)
    takes_out: bool = True


#: name -> benchmark (the scripts' own --help tells the details)
BENCHMARKS: dict[str, Benchmark] = {
    "pipeline": Benchmark("bench_pipeline.py", "pipeline solver scaling: IPA's grid and beyond, every backend, "
                          "brute force, greedy, IPA's Gurobi model and published times"),
    "gpus": Benchmark("bench_gpus.py", "min_gpus / max_throughput from 1 to 10,000 GPUs and 1 to 100 GPU types, "
                      "per-GPU vs aggregated on every backend, plans checked"),
    "variants": Benchmark("bench_variants.py", "variant_selection from 5 to 500 variants"),
    "prediction": Benchmark("bench_prediction.py", "performance-model error on held-out points of every shipped "
                            "and shared profile"),
    "capacity": Benchmark("bench_capacity.py", "which capacity-vs-cores curve predicts unprofiled core counts "
                          "(InfAdapter's profiles)"),
    "overhead": Benchmark("bench_overhead.py", "servopt's model and backends against hand-written solver code; "
                          "servopt solve --json on a 50x50x7 pipeline against the interpreter's start",
                          quick=("--rounds", "2", "--cli-runs", "1", "--cli-size", "5", "5")),
    "backends": Benchmark("bench_backends.py", "every backend on several model classes (the evidence for auto)",
                          quick=("--runs", "1")),
    "simulate": Benchmark("bench_simulate.py", "the serving simulator on solved plans"),
    "scale": Benchmark("bench_scale.py", "large inputs: 1.5 M-row profiles through load_profile and servopt fit, "
                       "10 MB YAML and JSON problem files (wall time, peak RSS)"),
    "fleet": Benchmark("bench_fleet.py", "fleet planning from 5 to 500 models on up to 1,000 GPUs of 5 types: "
                       "the exact MILP's cost and time against three baselines"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", nargs="?", choices=sorted(BENCHMARKS),
                        help=f"benchmark to run: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run (a smoke test)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where the CSV and PNG go (default benchmarks/results, or a new temporary folder "
                             "with --quick: never the committed results unless DIR is benchmarks/results)")
    parser.add_argument("--dir", metavar="BENCHMARKS", default=None,
                        help="the benchmarks/ folder (default: the one beside this servopt checkout)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--args", dest="script_args", metavar='"ARGS"', default="",
                        help='more arguments for the script, as one string: --args="--runs 5"')


def benchmarks_dir(given: str | None) -> Path:
    """The benchmarks/ folder: ``given``, else the one beside the imported servopt package."""
    from servopt.exceptions import ValidationError

    if given is not None:
        folder = Path(given)
        if not folder.is_dir():
            raise ValidationError(f"--dir {given}: no such folder; give the benchmarks/ folder of a servopt checkout")
        return folder
    import servopt

    folder = Path(servopt.__file__).resolve().parents[1] / "benchmarks"
    if not folder.is_dir():
        raise ValidationError(
            f"no benchmarks/ folder beside the installed servopt ({folder}); the benchmark scripts live in the "
            "source repository: clone it and run `pip install -e .` there, or pass --dir PATH/benchmarks"
        )
    return folder


def output_folder(name: str, out: str | None, quick: bool) -> str | None:
    """The ``--out`` this command passes to benchmark ``name``'s script.

    ``out`` as given (benchmarks/results too, when asked for); for ``quick`` without ``out``, a new temporary
    folder, named on stderr, so that a smoke run never replaces the committed results; else ``None`` (the
    script's default, benchmarks/results). ``None`` too for a script that takes no ``--out`` (it makes its own
    temporary folder for ``--quick``); giving it ``out`` is a usage error.

    Examples
    --------
    >>> output_folder("pipeline", "/tmp/bench", quick=True)
    '/tmp/bench'
    >>> output_folder("pipeline", None, quick=False) is None
    True
    """
    from servopt.exceptions import ValidationError

    bench = BENCHMARKS[name]
    if not bench.takes_out:
        if out is not None:
            raise ValidationError(
                f"benchmark {name!r} takes no --out here; its --quick writes to a new temporary folder, and "
                f"`python benchmarks/{bench.script} --out DIR` writes where you choose")
        return None
    if out is None and quick:
        import tempfile

        out = tempfile.mkdtemp(prefix=f"servopt-bench-{name}-")
        print(f"servopt: --quick writes to {out} (give --out DIR to choose)", file=sys.stderr)
    return out


def run(args: argparse.Namespace) -> int:
    from servopt.exceptions import ValidationError

    if args.list:
        width = max(len(n) for n in BENCHMARKS)
        for name, b in BENCHMARKS.items():
            print(f"{name.ljust(width)}  {b.script:28s} {b.summary}")
        return 0
    if args.name is None:
        raise ValidationError(f"give a benchmark NAME: {', '.join(BENCHMARKS)} (or --list)")
    bench = BENCHMARKS[args.name]
    script = benchmarks_dir(args.dir) / bench.script
    if not script.is_file():
        raise ValidationError(f"benchmark {args.name!r}: {script} is missing from the checkout")
    import shlex

    extra = shlex.split(args.script_args)
    cmd = [sys.executable, str(script)]
    if args.quick:
        cmd += list(bench.quick)
    out = output_folder(args.name, args.out, args.quick)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        cmd += ["--out", out]
    cmd += extra
    code = subprocess.call(cmd, cwd=script.parent.parent)
    if code != 0:
        print(f"servopt: benchmark {args.name!r} failed (exit code {code}): {' '.join(cmd)}", file=sys.stderr)
        return 1
    return 0
