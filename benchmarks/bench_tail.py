"""The tail of ``pipeline``'s exact ``dp``: p50, p99 and max over many adversarial instances per size.

Instances (:func:`adversarial_instance`): every variant of every stage on the latency/accuracy front (accuracy
strictly rising with latency, so no option is dominated within a stage before batching), batch-1 latencies of
20-80 ms for the fastest variant and up to 8x that for the most accurate, latency(b) = latency(1) b^p with p in
0.7..0.95, raw accuracies in 0.90..0.9995 (``product``) or 0.4..0.95 (``sum``), α drawn from {10, 100, 1000}
(``product``) or {2, 10, 100} (``sum``), β from {0.01, 0.1, 1}, λ in 5..40 RPS, and a tight SLA: 1.05x to 2.5x
the fastest pipeline's latency. Each instance is solved once by ``dp`` in process (``servopt.solve(problem,
"dp")``, the exact check included); the time is ``solve_seconds`` (wall clock), and ``cpu_s`` the process CPU
time of the same call (on a shared machine the wall clock also counts the time other processes held the core).

Usage::

    python benchmarks/bench_tail.py [--instances 500] [--sizes 9x9x7,50x20x3,50x50x3,50x50x7] [--stable] [--quick]

Writes ``tail.csv`` (one row per instance) and ``tail_summary.csv`` (per size and objective: instances, median,
p99, max, slowest seed, largest CPU time) and ``tail.png`` under ``--out`` (default benchmarks/results; with
``--quick`` a new temporary folder, named on stderr); prints the summary. With ``--stable`` every instance also
has a current deployment and ``prefer_stable`` (the fewest changes among the optimal plans); the files are then
``tail_stable.csv``, ``tail_stable_summary.csv`` and ``tail_stable.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import output_dir, pyplot, save_figure, write_csv  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32, 64)
SIZES = "9x9x7,50x20x3,50x50x3,50x50x7"
FIELDS = ["accuracy", "stages", "variants", "batches", "seed", "alpha", "status", "objective", "solve_s", "cpu_s"]
SUMMARY = ["accuracy", "stages", "variants", "batches", "instances", "median_s", "p99_s", "max_s", "slowest_seed",
           "max_cpu_s", "note"]


def adversarial_instance(seed: int, stages: int, variants: int, batches: int = 3, accuracy: str = "product") -> Any:
    """The adversarial pipeline of the module docstring (reproducible per seed)."""
    from servopt.formulations.pipeline.problem import BatchProfile, Pipeline, Stage, StageVariant

    rng = np.random.default_rng(seed)
    sizes = BATCHES[:batches]
    out, fastest = [], 0.0
    for s in range(stages):
        lo = float(rng.uniform(20.0, 80.0))
        lat = np.sort(rng.uniform(lo, lo * float(rng.uniform(2.0, 8.0)), variants))
        lat[0] = lo
        if accuracy == "product":
            first = float(rng.uniform(0.90, 0.97))
            accs = np.sort(rng.uniform(first, min(0.9995, first + 0.08), variants))
        else:
            first = float(rng.uniform(0.4, 0.7))
            accs = np.sort(rng.uniform(first, min(0.95, first + 0.25), variants))
        accs = accs + 1e-7 * np.arange(variants)  # strictly rising: every variant on the front
        power = float(rng.uniform(0.7, 0.95))
        out.append(Stage(f"s{s}", [
            StageVariant(f"v{m}", round(float(accs[m]), 7), float(rng.choice([1, 2, 4])),
                         [BatchProfile(b, round(float(lat[m]) * b**power, 3)) for b in sizes])
            for m in range(variants)]))
        fastest += lo
    alpha = float(rng.choice([10.0, 100.0, 1000.0] if accuracy == "product" else [2.0, 10.0, 100.0]))
    return Pipeline(workload_rps=round(float(rng.uniform(5.0, 40.0)), 3),
                    sla_ms=round(fastest * float(rng.uniform(1.05, 2.5)), 3), stages=out, alpha=alpha,
                    beta=float(rng.choice([0.01, 0.1, 1.0])), delta=1e-6, accuracy=accuracy,
                    normalize="none", max_replicas=200, name=f"adv{stages}x{variants}x{batches}-{seed}")


def run(seed: int, stages: int, variants: int, batches: int, accuracy: str, stable: bool = False) -> dict[str, Any]:
    import servopt

    problem = adversarial_instance(seed, stages, variants, batches, accuracy)
    if stable:  # a running deployment (variant (seed + stage) mod m, largest batch), fewest changes among optima
        current = {s.name: (s.variants[(seed + i) % len(s.variants)].name, s.variants[0].batches[-1].batch_size)
                   for i, s in enumerate(problem.stages)}
        problem = problem.update(current=current, prefer_stable=True)
        accuracy = f"{accuracy}+stable"
    cpu = time.process_time()
    solution = servopt.solve(problem, "dp")
    cpu = time.process_time() - cpu
    return {"accuracy": accuracy, "stages": stages, "variants": variants, "batches": batches, "seed": seed,
            "alpha": problem.alpha, "status": solution.status.value, "objective": solution.objective,
            "solve_s": solution.solve_seconds, "cpu_s": cpu}


def summarise(rows: list[dict[str, Any]], planned: int) -> list[dict[str, Any]]:
    """Per size and objective: instances, median, p99, max; the note says when fewer than ``planned`` ran."""
    out = []
    keys = sorted({(r["accuracy"], r["stages"], r["variants"], r["batches"]) for r in rows})
    for acc, s, m, b in keys:
        mine = [r for r in rows if (r["accuracy"], r["stages"], r["variants"], r["batches"]) == (acc, s, m, b)]
        t = np.array([r["solve_s"] for r in mine])
        out.append({"accuracy": acc, "stages": s, "variants": m, "batches": b, "instances": len(mine),
                    "median_s": float(np.median(t)), "p99_s": float(np.percentile(t, 99)), "max_s": float(t.max()),
                    "slowest_seed": mine[int(np.argmax(t))]["seed"],
                    "max_cpu_s": float(max(r["cpu_s"] for r in mine)),
                    "note": "" if len(mine) >= planned else f"stopped by --budget-s after {len(mine)} of {planned}"})
    return out


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{r['accuracy']} {r['stages']}x{r['variants']}x{r['batches']}" for r in summary]
    x = np.arange(len(summary))
    for key, marker in (("median_s", "o"), ("p99_s", "s"), ("max_s", "^")):
        ax.scatter(x, [r[key] for r in summary], marker=marker, label=key.replace("_s", ""))
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8, label="target 1 s")
    ax.set_yscale("log")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("dp solve_seconds")
    ax.set_title("pipeline dp on adversarial instances (shared 2-core machine)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def _write(rows: list[dict[str, Any]], planned: int, out: Path, name: str) -> list[dict[str, Any]]:
    summary = summarise(rows, planned)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, FIELDS, out / f"{name}.csv")
    write_csv(summary, SUMMARY, out / f"{name}_summary.csv")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=500, help="instances per size and objective")
    parser.add_argument("--sizes", default=SIZES, help="comma-separated STAGESxVARIANTSxBATCHES")
    parser.add_argument("--accuracy", default="product,sum", help="objectives: product, sum or both")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="stop starting new instances of a size after this many seconds (labelled in the note)")
    parser.add_argument("--stable", action="store_true",
                        help="every instance with a current deployment and prefer_stable (files tail_stable*)")
    parser.add_argument("--quick", action="store_true", help="two tiny sizes, 3 instances (a smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the CSVs and PNG (default "
                        "benchmarks/results; with --quick a new temporary folder)")
    args = parser.parse_args(argv)
    args.out = output_dir(args.out, quick=args.quick, name="bench_tail")
    sizes = [tuple(int(v) for v in s.split("x")) for s in ("3x3x2,5x4x3" if args.quick else args.sizes).split(",")]
    n = 3 if args.quick else args.instances
    name = "tail_stable" if args.stable else "tail"
    rows: list[dict[str, Any]] = []
    for accuracy in args.accuracy.split(","):
        for stages, variants, batches in sizes:
            start = time.perf_counter()
            for seed in range(n):
                if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
                    break
                rows.append(run(seed, stages, variants, batches, accuracy, args.stable))
            summary = _write(rows, n, args.out, name)  # after every size: a long run that is stopped keeps its rows
            print(f"{name} {accuracy} {stages}x{variants}x{batches}: done", file=sys.stderr, flush=True)
    summary = _write(rows, n, args.out, name)
    plot(summary, args.out / f"{name}.png")
    for r in summary:
        print(f"{r['accuracy']:8s} {r['stages']}x{r['variants']}x{r['batches']}: n={r['instances']} "
              f"median {r['median_s'] * 1e3:.1f} ms, p99 {r['p99_s'] * 1e3:.1f} ms, max {r['max_s'] * 1e3:.1f} ms "
              f"(seed {r['slowest_seed']})")
    print(f"wrote {name}.csv, {name}_summary.csv and {name}.png under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
