"""``variant_selection`` scaling: 5 to 500 variants (InfAdapter's problem).

Instances (:func:`variant_instance`): M variants spread between InfAdapter's five ResNets
(data/infadapter: accuracy, load time and the capacity regression at the 750 ms SLO, interpolated by
position, slopes log-linearly), capacity(n) = slope n + intercept with 3 % noise, whole RPS, on 1..20 cores with
``min_cores`` 2; InfAdapter's settings: a 20-core budget, α = 1, β = 0.05, γ = 0.001, and the running deployment
its initial state (the most accurate variant on 20 cores); λ = 120 RPS. Family ``budget-scaled`` grows the budget
and the load with the variants (4 cores and 24 RPS per variant), where the DP's tables grow too.

Methods, building and solving timed apart, medians of ``--runs`` interleaved runs:

* ``dp``          servopt's exact dynamic programming over (cores, load) (``servopt.solve(problem, "dp")``; the
                  default where its tables are small);
* ``milp:NAME``   servopt's MILP on every installed backend (CP-SAT with the integral scale);
* ``bruteforce``  enumeration (small instances), ``greedy`` and ``ms+`` (InfAdapter's MS+) policies, with their
                  optimality gaps (opt − policy) / max(1, |opt|);
* ``cli``         ``servopt solve FILE --json``'s ``solve_seconds`` (target: 500 variants in <= 1 s).

Usage::

    python benchmarks/bench_variants.py [--runs 5] [--time-limit 30] [--quick]

Writes ``variants.csv`` and ``variants.png`` under ``--out`` (default ``benchmarks/results/``; with ``--quick`` a
new temporary folder, named on stderr).

``--fast-paths`` instead times the exact algorithms in every λ mode at 500 variants (``--quick``: 5), InfAdapter's
20-core instance: λ whole (120 RPS), decimal (120.37), a third (120 1/3, a float with 16 digits), and
capacities off any grid (each × U[0.97, 1.03], λ = 120.37), where only ``frontier`` and the MILP apply. Methods:
``dp``, ``frontier`` and ``milp:highs`` through ``servopt.solve(problem, method)`` (median ``solve_seconds`` of
``--runs`` interleaved runs; one run for a method over 2 s). Writes ``variants_fastpath.csv`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (  # noqa: E402
    ROOT,
    cli_solve_seconds,
    interleaved_runs,
    median,
    output_dir,
    pyplot,
    save_figure,
    timed_milp,
    write_csv,
)

SIZES = [5, 10, 20, 50, 100, 200, 500]
SCALED = [5, 10, 20, 50]
QUICK = [3, 5]
QUICK_SCALED = [3]
TARGETS = {500: 1.0}
QUICK_TARGETS = {5: 1.0}
DATA = ROOT / "data" / "infadapter"
POLICIES = ("greedy", "ms+")  # heuristics: status "feasible" is their normal answer
FIELDS = ["family", "variants", "budget", "workload_rps", "method", "vars", "runs", "build_s", "solve_s", "total_s",
          "status", "objective", "gap", "target_s", "note"]

# InfAdapter's ResNet 18/34/50/101/152 (used when data is absent): accuracy, load time s, slope, intercept
_RESNETS = [(0.69758, 6.44, 24.4462, -6), (0.73314, 6.79, 13.0444, -1), (0.7613, 6.82, 10.3212, -3),
            (0.77374, 7.77, 5.0901, 0), (0.78312, 8.52, 3.8145, -2)]


def _resnets() -> list[tuple[float, float, float, float]]:
    """(accuracy, load time, slope, intercept) of InfAdapter's five ResNets, from data when present."""
    import csv

    try:
        constants = json.loads((DATA / "variant_constants.json").read_text())
        with (DATA / "capacity_regression_sla750.csv").open(newline="") as fh:
            reg = {r["arch"]: r for r in csv.DictReader(fh)}
        return [(float(constants["baseline_accuracies_top1"][a]), float(constants["load_times_s"][a]),
                 float(reg[a]["slope_rps_per_core"]), float(reg[a]["intercept_used"]))
                for a in ("18", "34", "50", "101", "152")]
    except (OSError, KeyError, ValueError):
        return list(_RESNETS)


def variant_instance(n_variants: int, budget: int = 20, workload: float = 120.0, seed: int = 0) -> Any:
    """The InfAdapter-like instance of the module docstring."""
    from servopt.formulations.variant_selection.problem import Variant, VariantSelection

    rng = np.random.default_rng(seed)
    base = np.asarray(_resnets())
    knots = np.linspace(0.0, 1.0, len(base))
    top = min(20, budget)
    variants = []
    for m in range(n_variants):
        t = m / (n_variants - 1) if n_variants > 1 else 1.0
        acc = float(np.interp(t, knots, base[:, 0])) + float(rng.uniform(-0.002, 0.002))
        load = float(np.interp(t, knots, base[:, 1]))
        slope = math.exp(float(np.interp(t, knots, np.log(base[:, 2]))))
        intercept = float(np.interp(t, knots, base[:, 3]))
        capacity = {k: float(max(0, round((slope * k + intercept) * float(rng.normal(1.0, 0.03)))))
                    for k in range(1, top + 1)}
        current = top if m == n_variants - 1 else 0
        variants.append(Variant(f"v{m}", round(acc, 5), capacity, load_time_s=round(load, 2), current_cores=current,
                                min_cores=2, max_cores=top))
    return VariantSelection(workload, budget, variants, alpha=1.0, beta=0.05, gamma=0.001,
                            name=f"variants{n_variants}")


def problem_yaml(problem: Any) -> str:
    import yaml

    doc = {"problem": "variant_selection", "name": problem.name, "workload_rps": problem.workload_rps,
           "core_budget": problem.core_budget, "alpha": problem.alpha, "beta": problem.beta, "gamma": problem.gamma,
           "variants": [{"name": v.name, "accuracy": v.accuracy, "load_time_s": v.load_time_s,
                         "current_cores": v.current_cores, "min_cores": v.min_cores, "max_cores": v.max_cores,
                         "capacity": dict(v.capacity)} for v in problem.variants]}
    return yaml.safe_dump(doc, sort_keys=False)


def make(family: str, n: int) -> Any:
    return variant_instance(n) if family == "budget20" else variant_instance(n, budget=4 * n, workload=24.0 * n)


def one(method: str, family: str, n: int, time_limit: float) -> dict[str, Any]:
    from servopt.exceptions import ServoptError
    from servopt.policies import run_policy
    from servopt.formulations.variant_selection.dp import solve_dp

    problem = make(family, n)
    if method == "dp":
        t0 = time.perf_counter()
        problem._structure()  # the allowed core counts and capacities (what the MILP's build also computes)
        t1 = time.perf_counter()
        try:
            status, plan, _ = solve_dp(problem)
        except ServoptError as exc:
            return {"status": "skipped", "note": str(exc)[:120]}
        return {"build_s": t1 - t0, "solve_s": time.perf_counter() - t1, "status": status.value,
                "objective": plan.objective if plan is not None else math.nan}
    if method.startswith("milp:"):
        return timed_milp(problem, method[5:], time_limit)
    t0 = time.perf_counter()
    try:
        sol = run_policy(problem, method)
    except ServoptError as exc:
        return {"status": "skipped", "note": str(exc)[:100]}
    return {"solve_s": time.perf_counter() - t0, "status": sol.status.value,
            "objective": sol.objective if sol.objective is not None else math.nan}


def measure(family: str, sizes: list[int], methods: list[str], runs: int, time_limit: float,
            rows: list[dict[str, Any]]) -> None:
    given_up: set[str] = set()
    for n in sizes:
        wanted = [m for m in methods if m not in given_up and not (m == "bruteforce" and n > 8)]
        samples = interleaved_runs(wanted, runs, lambda m: one(m, family, n, time_limit),
                                   repeat_without_plan=POLICIES)
        exact = [g[-1]["objective"] for m, g in samples.items() if g and g[-1].get("status") == "optimal"
                 and m not in ("greedy", "ms+")]
        best = max(exact) if exact else math.nan
        problem = make(family, n)
        for method, got in samples.items():
            last = got[-1]
            row = {"family": family, "variants": n, "budget": problem.core_budget,
                   "workload_rps": problem.workload_rps, "method": method, "vars": last.get("vars", ""),
                   "runs": len(got), "build_s": median([g.get("build_s", math.nan) for g in got]),
                   "solve_s": median([g.get("solve_s", math.nan) for g in got]),
                   "total_s": median([g.get("build_s", 0.0) + g["solve_s"] for g in got if "solve_s" in g]),
                   "status": last.get("status", ""), "objective": last.get("objective", math.nan),
                   "note": last.get("note", "")}
            if math.isfinite(best) and math.isfinite(row["objective"]):
                gap = (best - row["objective"]) / max(1.0, abs(best))
                if method in ("greedy", "ms+"):
                    row["gap"] = gap
                elif last.get("status") == "optimal" and abs(gap) > 1e-7:
                    row["note"] = (row["note"] + f"; objective differs from the best exact {best:.9g}").strip("; ")
            rows.append(row)
            if last.get("status") in ("feasible", "error") and method not in ("greedy", "ms+") \
                    or (math.isfinite(row["total_s"]) and row["total_s"] > time_limit):
                given_up.add(method)
            print(f"{family:13s} {n:4d} variants  {method:12s} {row['status']:9s} build {row['build_s']:9.5f} "
                  f"solve {row['solve_s']:9.5f}  obj {row['objective']:.9g}", flush=True)


def cli_targets(targets: dict[int, float], runs: int, rows: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for n, limit in targets.items():
            path = Path(tmp) / f"variants_{n}.yaml"
            problem = variant_instance(n)
            path.write_text(problem_yaml(problem))
            cli_solve_seconds(path)  # warm-up: bytecode cache
            got = [cli_solve_seconds(path) for _ in range(runs)]
            seconds = median([g["solve_seconds"] for g in got])
            rows.append({"family": "target", "variants": n, "budget": problem.core_budget,
                         "workload_rps": problem.workload_rps, "method": "cli", "runs": runs, "total_s": seconds,
                         "status": got[-1]["status"], "objective": got[-1]["objective"], "target_s": limit,
                         "note": f"servopt solve --json, backend {got[-1]['backend']}"})
            print(f"target {n} variants: servopt solve --json {seconds:.4f} s (target {limit} s, backend "
                  f"{got[-1]['backend']})", flush=True)


FAST_FIELDS = ["variants", "mode", "workload_rps", "method", "runs", "solve_s", "status", "objective", "target_s",
               "note"]
MODES = ("whole", "decimal", "third", "off-grid")
FAST_TARGET_S = 0.5


def mode_instance(n: int, mode: str) -> Any:
    """The 20-core instance of ``n`` variants in one λ mode (module docstring)."""
    from dataclasses import replace

    problem = variant_instance(n)
    if mode == "whole":
        return problem
    if mode == "decimal":
        return replace(problem, workload_rps=120.37)
    if mode == "third":
        return replace(problem, workload_rps=120 + 1 / 3)
    rng = np.random.default_rng(7)
    variants = [replace(v, capacity={k: c * float(rng.uniform(0.97, 1.03)) for k, c in v.capacity.items()})
                for v in problem.variants]
    return replace(problem, variants=variants, workload_rps=120.37)


def fast_paths(runs: int, time_limit: float, quick: bool, out: Path) -> list[dict[str, Any]]:
    """``dp``, ``frontier`` and the MILP in every λ mode (module docstring)."""
    from servopt.exceptions import ServoptError
    from servopt.result import SolveParams
    from servopt.solve import solve

    n = 5 if quick else 500
    rows: list[dict[str, Any]] = []
    for mode in MODES:
        problem = mode_instance(n, mode)
        methods = (["dp"] if mode != "off-grid" else []) + ["frontier", "highs"]

        def once(method: str) -> dict[str, Any]:
            try:
                sol = solve(problem, method, params=SolveParams(time_limit_s=time_limit))
            except ServoptError as exc:
                return {"solve_s": math.nan, "status": "skipped", "note": str(exc)[:100]}
            return {"solve_s": sol.solve_seconds, "status": sol.status.value, "objective": sol.objective}

        once("highs" if quick else "dp")  # warm-up: imports
        samples = interleaved_runs(methods, runs, once)
        best = [g[-1]["objective"] for g in samples.values() if g and g[-1]["status"] == "optimal"]
        for m, got in samples.items():
            last = got[-1]
            note = last.get("note", "")
            if best and last["status"] == "optimal" and abs(last["objective"] - max(best)) > 1e-9:
                note = f"objective differs from the best {max(best):.12g}"
            row = {"variants": n, "mode": mode, "workload_rps": problem.workload_rps,
                   "method": "milp:highs" if m == "highs" else m, "runs": len(got),
                   "solve_s": median([g["solve_s"] for g in got]), "status": last["status"],
                   "objective": last.get("objective", math.nan),
                   "target_s": FAST_TARGET_S if m != "highs" else "", "note": note}
            rows.append(row)
            print(f"{n:4d} variants  {mode:8s} λ={problem.workload_rps:<10.6g} {row['method']:10s} {row['status']:8s}"
                  f" solve {row['solve_s']:9.4f} s  obj {row['objective']:.12g} {note}", flush=True)
    write_csv(rows, FAST_FIELDS, out / "variants_fastpath.csv")
    print(f"wrote {out / 'variants_fastpath.csv'}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="repeated runs per point (medians)")
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds per MILP solve")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run (a smoke test)")
    parser.add_argument("--fast-paths", action="store_true", help="only the exact algorithms in every λ mode at "
                        "500 variants (writes variants_fastpath.csv)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the CSV and PNG (default "
                        "benchmarks/results; with --quick a new temporary folder)")
    args = parser.parse_args(argv)
    args.out = output_dir(args.out, quick=args.quick, name="bench_variants")
    if args.fast_paths:
        fast_paths(1 if args.quick else args.runs, args.time_limit, args.quick, args.out)
        return 0

    from servopt.backends import available

    milp = [f"milp:{b}" for b in ("highs", "cpsat", "scip", "gurobi") if b in available()]
    methods = ["dp", *milp, "bruteforce", "greedy", "ms+"]
    runs = 1 if args.quick else args.runs
    rows: list[dict[str, Any]] = []
    for method in methods:  # warm-up
        one(method, "budget20", 3, args.time_limit)
    measure("budget20", QUICK if args.quick else SIZES, methods, runs, args.time_limit, rows)
    measure("budget-scaled", QUICK_SCALED if args.quick else SCALED, methods, runs, args.time_limit, rows)
    cli_targets(QUICK_TARGETS if args.quick else TARGETS, runs, rows)
    write_csv(rows, FIELDS, args.out / "variants.csv")
    plot(rows, args.out / "variants.png")
    print(f"wrote {args.out / 'variants.csv'} and {args.out / 'variants.png'}")
    return 0


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "cli"]
    for ax, family, title in ((axes[0], "budget20", "20-core budget, λ = 120 RPS"),
                              (axes[1], "budget-scaled", "budget 4 cores and λ 24 RPS per variant")):
        for i, method in enumerate(methods):
            pts = sorted((r["variants"], r["total_s"]) for r in rows if r["family"] == family
                         and r["method"] == method and r["status"] in ("optimal", "feasible")
                         and isinstance(r.get("total_s"), float) and math.isfinite(r["total_s"]))
            if pts:
                ax.plot(*zip(*pts), "-" if method == "dp" or method.startswith("milp") else ":", marker="o",
                        ms=3, color=f"C{i}", label=method)
        if family == "budget20":
            for r in rows:
                if r["family"] == "target":
                    ax.scatter([r["variants"]], [r["total_s"]], marker="*", s=140, color="k", zorder=5,
                               label="servopt solve --json")
                    ax.axhline(r["target_s"], color="r", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("variants")
        ax.set_ylabel("build + solve, s (median)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    for i, method in enumerate(("greedy", "ms+")):
        pts = sorted((r["variants"], r["gap"]) for r in rows if r["method"] == method and r["family"] == "budget20"
                     and isinstance(r.get("gap"), float) and math.isfinite(r["gap"]))
        if pts:
            ax.plot(*zip(*pts), marker="o", label=method, color=f"C{i + 6}")
    ax.set_xscale("log")
    ax.set_xlabel("variants")
    ax.set_ylabel("(optimum − policy) / max(1, |optimum|)")
    ax.set_title("policies: optimality gap")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
