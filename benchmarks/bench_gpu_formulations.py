"""``min_gpus`` / ``max_throughput``: aggregated-by-type vs the seed's per-GPU linearisation, 1..10,000 GPUs.

Pools of 1..100 GPU types (6 batch sizes each, EfficientNet-like latency curves scaled per type, warm-ups of
5-100 batches, prices in cents) and 1..10,000 GPUs in all, deadline 600 s:

* ``min_gpus``, ``objective: cost``, N = 60 % of the pool's capacity;
* ``max_throughput`` with a budget of 40 % of the pool's total price (at least the cheapest GPU).

Both formulations are solved by every backend that can take them (CP-SAT with ``scale=100`` for the prices;
Gurobi's pip licence stops at 2,000 variables/rows), in interleaved rounds, one thread each. Per run:
model building (formulation + arrays), the backend's own build, the solve, the total (medians over the rounds),
the objective and whether the plan passes the independent checker. Once a (formulation, backend) pair exceeds
the time limit on a pool, larger pools are skipped for it. "Equal answers" is checked per pool: every optimal
objective must agree.

Usage::

    python benchmarks/bench_gpu_formulations.py [--rounds 3] [--time-limit 60] [--quick]

Writes ``benchmarks/results/gpu_formulations.csv`` and ``gpu_formulations.png`` (``--plot-only`` redraws the
PNG from the CSV). ``plan_ok`` is False for runs that ended without a plan.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = [(1, 1), (10, 1), (10, 10), (100, 1), (100, 10), (100, 100), (1000, 1), (1000, 10), (1000, 100),
         (10_000, 1), (10_000, 10), (10_000, 100)]
QUICK = [(1, 1), (10, 10), (100, 10), (1000, 10)]
BATCHES = (1, 8, 32, 64, 128, 256)


def make_pool(n_gpus: int, n_types: int, seed: int = 0) -> list:
    """``n_types`` GPU types sharing ``n_gpus`` GPUs; latency ``max(9 ms, 4.6 + 0.22 b) / speed`` per batch."""
    from servopt.formulations.gpu_common import GPUType

    rng = np.random.default_rng(seed)
    counts = [n_gpus // n_types + (t < n_gpus % n_types) for t in range(n_types)]
    pool = []
    for t in range(n_types):
        speed = float(rng.uniform(0.3, 3.0))
        batches = {}
        for b in BATCHES:
            lat = round(max(9.0, 4.6 + 0.22 * b) / speed * float(rng.uniform(0.95, 1.05)), 3)
            batches[b] = {"latency_ms": lat, "warmup_ms": round(lat * float(rng.uniform(5, 100)), 3)}
        price = round(speed * float(rng.uniform(0.8, 1.6)), 2)
        pool.append(GPUType(f"gpu{t}", max_count=counts[t], cost_per_hour=price, batches=batches))
    return pool


def make_problem(kind: str, n_gpus: int, n_types: int, formulation: str):
    from servopt.formulations.max_throughput import MaxThroughput
    from servopt.formulations.min_gpus import MinGPUs

    pool = make_pool(n_gpus, n_types)
    if kind == "min_gpus":
        probe = MinGPUs(images=1, deadline_s=600, gpus=pool)
        return MinGPUs(images=max(1, int(0.6 * probe.capacity())), deadline_s=600, gpus=pool, objective="cost",
                       formulation=formulation)
    budget = max(round(0.4 * sum(g.max_count * g.cost_per_hour for g in pool), 2),
                 min(g.cost_per_hour for g in pool))  # at least one GPU is affordable
    return MaxThroughput(deadline_s=600, gpus=pool, budget_per_hour=budget, formulation=formulation)


def run_once(kind: str, n_gpus: int, n_types: int, formulation: str, backend: str, time_limit: float) -> dict:
    from servopt.exceptions import ServoptError
    from servopt.formulations.checks import check_gpu_plan
    from servopt.result import SolveParams
    from servopt.solve import solve

    problem = make_problem(kind, n_gpus, n_types, formulation)
    t0 = time.perf_counter()
    model, decode = problem.build()
    arrays = model.arrays()
    build_s = time.perf_counter() - t0
    params = SolveParams(time_limit_s=time_limit, threads=1, scale=100.0 if backend == "cpsat" else None)
    row = {"vars": arrays.n_vars, "rows": arrays.n_rows, "build_s": build_s}
    try:
        result = solve(model, backend, params=params)
    except ServoptError as exc:
        return {**row, "status": "skipped", "note": str(exc).split(";")[0][:120]}
    plan = decode(result) if result.status.has_solution else None
    return {
        **row,
        "backend_build_s": result.build_seconds,
        "solve_s": result.solve_seconds,
        "total_s": build_s + result.build_seconds + result.solve_seconds,
        "status": result.status.value,
        "objective": plan.objective if plan is not None else math.nan,
        "plan_ok": (not check_gpu_plan(problem, plan)) if plan is not None else False,
        "note": "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--backends", default="highs,cpsat,scip,gurobi")
    parser.add_argument("--quick", action="store_true", help="small grid (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the existing CSV")
    args = parser.parse_args(argv)
    if args.plot_only:
        plot(read_csv(args.out / "gpu_formulations.csv"), args.out / "gpu_formulations.png")
        return 0

    from servopt.backends import available

    backends = [b for b in args.backends.split(",") if b in available()]
    pairs = [(f, b) for f in ("aggregated", "per_gpu") for b in backends]
    rows = []
    timed_out: set[tuple[str, str, str]] = set()
    for kind in ("min_gpus", "max_throughput"):
        for n_gpus, n_types in (QUICK if args.quick else SIZES):
            runs: dict[tuple[str, str], list[dict]] = {p: [] for p in pairs}
            for _ in range(args.rounds):  # interleaved: machine load hits every pair alike
                for f, b in pairs:
                    if (kind, f, b) in timed_out:
                        continue
                    r = run_once(kind, n_gpus, n_types, f, b, args.time_limit)
                    runs[f, b].append(r)
                    if r["status"] in ("feasible", "error", "skipped") or r.get("total_s", 0) > args.time_limit:
                        timed_out.add((kind, f, b))
                        break
            here = []
            for (f, b), rs in runs.items():
                if not rs:
                    continue
                last = rs[-1]
                med = {k: statistics.median(r[k] for r in rs) for k in ("build_s", "backend_build_s", "solve_s",
                                                                       "total_s") if all(k in r for r in rs)}
                rows.append({"problem": kind, "gpus": n_gpus, "types": n_types, "formulation": f, "backend": b,
                             "vars": last["vars"], "rows": last["rows"], "rounds": len(rs), **med,
                             "status": last["status"], "objective": last.get("objective", math.nan),
                             "plan_ok": last.get("plan_ok", ""), "note": last.get("note", "")})
                here.append(rows[-1])
                print(f"{kind:14s} {n_gpus:6d} GPUs {n_types:4d} types {f:10s} {b:6s} {last['status']:9s} "
                      f"total {med.get('total_s', math.nan):8.4f} s  obj {rows[-1]['objective']}", flush=True)
            optimal = {round(r["objective"], 6) for r in here if r["status"] == "optimal"}
            if len(optimal) > 1:
                print(f"  !! objectives disagree: {sorted(optimal)}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "gpu_formulations.csv")
    plot(rows, args.out / "gpu_formulations.png")
    return 0


def write_csv(rows: list[dict], path: Path) -> None:
    fields = ["problem", "gpus", "types", "formulation", "backend", "vars", "rows", "rounds", "build_s",
              "backend_build_s", "solve_s", "total_s", "status", "objective", "plan_ok", "note"]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r.get(k, "")) for k in fields})
    tmp.replace(path)


def read_csv(path: Path) -> list[dict]:
    rows = []
    with path.open() as fh:
        for r in csv.DictReader(fh):
            for k in ("gpus", "types"):
                r[k] = int(r[k])
            for k in ("build_s", "backend_build_s", "solve_s", "total_s", "objective"):
                if r.get(k):
                    r[k] = float(r[k])
                else:
                    r.pop(k, None)
            rows.append(r)
    return rows


#: one colour per backend in every panel
COLOURS = {"highs": "tab:green", "cpsat": "tab:blue", "scip": "tab:red", "gurobi": "tab:orange", "cvxpy": "tab:purple"}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharey=True)
    for col, kind in enumerate(("min_gpus", "max_throughput")):
        for row, (xkey, fixed) in enumerate((("gpus", "types10"), ("types", "gpus1000"))):
            ax = axes[row][col]
            for f, style in (("aggregated", "-"), ("per_gpu", "--")):
                for b in sorted({r["backend"] for r in rows}):
                    pts = [r for r in rows if r["problem"] == kind and r["formulation"] == f and r["backend"] == b
                           and r["status"] == "optimal" and "total_s" in r
                           and (r["types"] == min(10, r["gpus"]) if fixed == "types10" else r["gpus"] == 1000)]
                    pts.sort(key=lambda r: r[xkey])
                    if pts:
                        ax.plot([r[xkey] for r in pts], [r["total_s"] for r in pts], style,
                                marker="o" if f == "aggregated" else "s", color=COLOURS.get(b),
                                label=f"{f} / {b}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("GPUs in the pool (10 types, or 1 per GPU below 10)" if xkey == "gpus"
                          else "GPU types (1,000 GPUs)")
            ax.set_ylabel("build + solve, s (median)")
            ax.set_title(kind)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("min_gpus / max_throughput: aggregated vs per-GPU formulation (optimal runs only)")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
