"""``pipeline`` solver scaling: IPA's grid (1..9 stages x 1..9 variants) and beyond (up to 100 x 50).

Instances (:func:`ipa_instance`): IPA's scalability experiment grows its video pipeline (YOLOv5 -> ResNet) by
copying stages and variants; here every stage and variant is drawn around the video pipeline's profiles instead
(copies with 1e-6 perturbations make every variant of a stage the same, which no real pipeline is). Stage s: a
batch-1 latency of the fastest variant in U[30, 80] ms and of the most accurate 3-6x that (YOLOv5n -> x is 4.8x,
ResNet18 -> 152 is 5x), variants spaced geometrically in between; latency(b) = latency(1) b^p, p in U[0.75, 0.92]
(the video profiles: ResNet18 0.79, YOLOv5n 0.92), +-3 % noise, throughput b / latency; accuracy rising with
latency; cores per replica 1, 1, 2, 2, 4 by the variant's position. Batch sizes 1, 2, 4, ..., 64; λ = 20 RPS;
SLA 1,000 ms per stage; IPA's video weights α = 2, β = 1, δ = 1e-6; sum of rank-normalised accuracies (IPA's PAS).

Methods, each timed as model building and solving apart (medians of ``--runs`` interleaved runs; a method slower
than 2 s per run at a size runs once there):

* ``dp``          servopt's exact Pareto dynamic programming (``servopt.solve(problem, "dp")``, the default); build =
                  the option arrays, solve = the rest (pruning, bounds, DP, plan);
* ``milp:NAME``   servopt's MILP on every installed backend (build = formulation + arrays + native model);
* ``gurobi-mck``  a plain multiple-choice-knapsack model of the same options written directly in gurobipy's matrix
                  API (no servopt in the timed part; default Gurobi settings, MIPGap 0);
* ``ipa-gurobi``  the transcription of IPA's own Gurobi model (``ipa_gurobi_model.py``: AND, indicator and
                  quadratic constraints, NonConvex=2); status ``license`` beyond Gurobi's pip licence;
* ``bruteforce``  enumeration (servopt's policy), where the options multiply to at most 2,000,000;
* ``greedy``      the downgrade policy, with its optimality gap (opt − greedy) / max(1, |opt|);
* ``ipa-published`` IPA's Fig. 13 mean decision times (data/ipa/gurobi_scalability_fig13.csv);
* ``cli``         ``servopt solve FILE --json`` in a fresh interpreter, its ``solve_seconds`` (the targets).

Family ``product``: the same pipelines with IPA's JSys objective, the exact product of raw accuracies (drawn in
0.93..0.999 so that a long chain's product still matters; α = 100), solved by ``dp`` and the MILP's exact
product chain (HiGHS), up to 100 x 50.

Targets (SPEC §8, issue 8): IPA's 9 x 9 instance in <= 22 ms (100x faster than IPA's 2.2 s) and no slower than
``gurobi-mck`` measured in the same run; 100 x 50 in <= 1 s. Usage::

    python benchmarks/bench_pipeline.py [--runs 5] [--time-limit 30] [--quick]

Writes ``pipeline.csv`` and ``pipeline.png`` under ``--out`` (default ``benchmarks/results/``; with ``--quick`` a
new temporary folder, named on stderr); prints the targets.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (  # noqa: E402
    RESULTS,
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

BATCHES = (1, 2, 4, 8, 16, 32, 64)
IPA_GRID = [(s, m) for m in range(1, 10) for s in range(1, 10)]
MILP_GRID = [(s, m) for m in (1, 3, 5, 7, 9) for s in (1, 3, 5, 7, 9)]  # every MILP backend on this sub-grid
BEYOND = [(12, 12), (20, 20), (30, 30), (50, 50), (100, 50)]
PRODUCT = [(2, 2), (3, 3), (5, 5), (9, 9), (15, 10), (20, 10), (30, 15), (50, 20), (100, 50)]  # exact product
TARGETS = {(9, 9): 0.022, (100, 50): 1.0}
QUICK_GRID = [(1, 1), (2, 2), (3, 3)]
QUICK_BEYOND = [(5, 5)]
QUICK_TARGETS = {(3, 3): 0.022}
IPA_FIG13 = ROOT / "data" / "ipa" / "gurobi_scalability_fig13.csv"
POLICIES = ("greedy", "ms+")  # heuristics: status "feasible" is their normal answer
FIELDS = ["family", "stages", "variants", "batches", "options", "method", "runs", "build_s", "solve_s", "total_s",
          "status", "objective", "gap", "target_s", "note"]


# ------------------------------------------------------------------------------------------------ instances
def ipa_instance(stages: int, variants: int, batches: tuple[int, ...] = BATCHES, seed: int = 0,
                 accuracy: str = "sum") -> Any:
    """The IPA-like pipeline of the module docstring (reproducible per seed)."""
    from servopt.formulations.pipeline.problem import BatchProfile, Pipeline, Stage, StageVariant

    rng = np.random.default_rng(seed)
    out = []
    for s in range(stages):
        lo = float(rng.uniform(30.0, 80.0))
        hi = lo * float(rng.uniform(3.0, 6.0))
        power = float(rng.uniform(0.75, 0.92))
        if accuracy == "product":  # raw accuracies near 1, so that a long chain's product still matters
            acc_lo = float(rng.uniform(0.93, 0.97))
            acc_hi = min(0.999, acc_lo + float(rng.uniform(0.01, 0.04)))
        else:
            acc_lo = float(rng.uniform(0.4, 0.7))
            acc_hi = acc_lo + float(rng.uniform(0.05, 0.25))
        vs = []
        for m in range(variants):
            t = m / (variants - 1) if variants > 1 else 1.0
            l1 = lo * (hi / lo) ** t * float(rng.uniform(0.95, 1.05))
            acc = acc_lo + (acc_hi - acc_lo) * t**0.5 + float(rng.uniform(-0.005, 0.005))
            cores = (1, 1, 2, 2, 4)[min(4, int(t * 4.999))]
            profile = [BatchProfile(b, round(l1 * b**power * float(rng.uniform(0.97, 1.03)), 2)) for b in batches]
            vs.append(StageVariant(f"v{m}", round(acc, 4), float(cores), profile))
        out.append(Stage(f"s{s}", vs))
    return Pipeline(workload_rps=20.0, sla_ms=1000.0 * stages, stages=out, alpha=100.0 if accuracy == "product"
                    else 2.0, beta=1.0, delta=1e-6, accuracy=accuracy, max_replicas=100,
                    name=f"ipa{stages}x{variants}")


def pipeline_yaml(problem: Any) -> str:
    """The problem in servopt's inline problem-file form (SPEC §5)."""
    import yaml

    doc = {
        "problem": "pipeline", "name": problem.name, "workload_rps": problem.workload_rps, "sla_ms": problem.sla_ms,
        "alpha": problem.alpha, "beta": problem.beta, "delta": problem.delta, "accuracy": problem.accuracy,
        "normalize": problem.normalize, "max_replicas": problem.max_replicas,
        "stages": [{"name": s.name, "variants": [
            {"name": v.name, "accuracy": v.accuracy, "cores": v.cores,
             "batches": {p.batch_size: {"latency_ms": p.latency_ms} for p in v.batches}}
            for v in s.variants]} for s in problem.stages],
    }
    return yaml.safe_dump(doc, sort_keys=False)


# -------------------------------------------------------------------------------------------------- methods
def run_dp(stages: int, variants: int, accuracy: str = "sum") -> dict[str, Any]:
    from servopt.formulations.pipeline.dp import solve_dp

    problem = ipa_instance(stages, variants, accuracy=accuracy)
    t0 = time.perf_counter()
    problem.options()
    t1 = time.perf_counter()
    status, plan, _ = solve_dp(problem)
    t2 = time.perf_counter()
    return {"build_s": t1 - t0, "solve_s": t2 - t1, "status": status.value,
            "objective": plan.objective if plan is not None else math.nan}


def run_milp(stages: int, variants: int, backend: str, time_limit: float, accuracy: str = "sum") -> dict[str, Any]:
    return timed_milp(ipa_instance(stages, variants, accuracy=accuracy), backend, time_limit)


def run_gurobi_mck(stages: int, variants: int, env: Any, accuracy: str = "sum") -> dict[str, Any]:
    """The plain MCK of the same options in gurobipy's matrix API (:func:`ipa_gurobi_model.solve_mck`)."""
    from ipa_gurobi_model import solve_mck

    r = solve_mck(ipa_instance(stages, variants, accuracy=accuracy), env)
    if r.status == "license":
        return {"build_s": r.build_s, "status": "license", "note": "beyond the pip licence"}
    return {"build_s": r.build_s, "solve_s": r.solve_s, "status": r.status,
            "objective": r.objective if r.objective is not None else math.nan}


def run_ipa(stages: int, variants: int, env: Any, time_limit: float, accuracy: str = "sum") -> dict[str, Any]:
    from ipa_gurobi_model import solve_ipa

    r = solve_ipa(ipa_instance(stages, variants, accuracy=accuracy), env=env, time_limit_s=time_limit)
    row = {"build_s": r.build_s, "status": r.status, "objective": r.objective if r.objective is not None else math.nan,
           "note": f"{r.size['variables']} variables, {r.size['general_constraints']} general constraints"
                   + (": beyond the pip licence" if r.status == "license" else "")}
    if r.status != "license":
        row["solve_s"] = r.solve_s
    return row


def run_policy_row(stages: int, variants: int, name: str, accuracy: str = "sum") -> dict[str, Any]:
    from servopt.exceptions import ServoptError
    from servopt.policies import run_policy

    problem = ipa_instance(stages, variants, accuracy=accuracy)
    t0 = time.perf_counter()
    try:
        sol = run_policy(problem, name)
    except ServoptError as exc:
        return {"status": "skipped", "note": str(exc)[:100]}
    return {"solve_s": time.perf_counter() - t0, "status": sol.status.value,
            "objective": sol.objective if sol.objective is not None else math.nan}


def options_count(stages: int, variants: int, accuracy: str = "sum") -> tuple[int, int]:
    """(options, feasible combinations) of an instance."""
    o = ipa_instance(stages, variants, accuracy=accuracy).options()
    per_stage = [int(o.feasible[sl].sum()) for sl in o.stage_slices]
    return int(o.stage.size), math.prod(per_stage)


# ---------------------------------------------------------------------------------------------------- driver
def measure(family: str, sizes: list[tuple[int, int]], methods: list[str], runs: int, time_limit: float,
            env: Any, rows: list[dict[str, Any]], accuracy: str = "sum") -> None:
    """Time ``methods`` on every size, interleaved per round; a method that hits a limit skips larger sizes."""
    given_up: set[str] = set()
    for stages, variants in sizes:
        n_options, combos = options_count(stages, variants, accuracy)
        wanted = [m for m in methods if m not in given_up and not (m == "bruteforce" and combos > 2_000_000)]
        samples = interleaved_runs(wanted, runs, lambda m: one(m, stages, variants, env, time_limit, accuracy),
                                   repeat_without_plan=POLICIES)
        opt = [s["objective"] for s in samples.get("dp", []) if s.get("status") == "optimal"]
        best = opt[0] if opt else math.nan
        for method, got in samples.items():
            if not got:
                continue
            last = got[-1]
            build = median([g.get("build_s", math.nan) for g in got])
            solve = median([g.get("solve_s", math.nan) for g in got])
            total = median([g.get("build_s", 0.0) + g["solve_s"] for g in got if "solve_s" in g])
            row = {"family": family, "stages": stages, "variants": variants, "batches": len(BATCHES),
                   "options": n_options, "method": method, "runs": len(got), "build_s": build, "solve_s": solve,
                   "total_s": total, "status": last.get("status", ""), "objective": last.get("objective", math.nan),
                   "note": last.get("note", "")}
            if method == "greedy" and math.isfinite(best) and math.isfinite(row["objective"]):
                row["gap"] = (best - row["objective"]) / max(1.0, abs(best))
            if math.isfinite(best) and math.isfinite(row["objective"]) and method != "greedy" \
                    and abs(row["objective"] - best) > 1e-6 * max(1.0, abs(best)) and last.get("status") == "optimal":
                row["note"] = (row["note"] + f"; objective differs from dp's {best:.9g}").strip("; ")
            rows.append(row)
            # a method that hits the time limit (or errs) skips larger sizes; licence refusals are instant, and
            # not monotone over IPA's grid, so they do not
            if last.get("status") in ("feasible", "time_limit", "error") and method != "greedy" \
                    or (math.isfinite(total) and total > time_limit):
                given_up.add(method)
            print(f"{family:9s} {stages:3d} x {variants:2d}  {method:14s} {row['status']:10s} "
                  f"build {build:9.5f}  solve {solve:9.5f}  obj {row['objective']:.9g}", flush=True)


def one(method: str, stages: int, variants: int, env: Any, time_limit: float,
        accuracy: str = "sum") -> dict[str, Any]:
    if method == "dp":
        return run_dp(stages, variants, accuracy)
    if method.startswith("milp:"):
        return run_milp(stages, variants, method[5:], time_limit, accuracy)
    if method == "gurobi-mck":
        return run_gurobi_mck(stages, variants, env, accuracy)
    if method == "ipa-gurobi":
        return run_ipa(stages, variants, env, time_limit, accuracy)
    return run_policy_row(stages, variants, method, accuracy)


def cli_targets(targets: dict[tuple[int, int], float], runs: int, rows: list[dict[str, Any]]) -> None:
    """``servopt solve --json`` on each target instance, ``runs`` fresh interpreters; the median solve_seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        for (stages, variants), limit in targets.items():
            path = Path(tmp) / f"pipeline_{stages}x{variants}.yaml"
            path.write_text(pipeline_yaml(ipa_instance(stages, variants)))
            cli_solve_seconds(path)  # warm-up: bytecode cache
            got = [cli_solve_seconds(path) for _ in range(runs)]
            seconds = median([g["solve_seconds"] for g in got])
            rows.append({"family": "target", "stages": stages, "variants": variants, "batches": len(BATCHES),
                         "options": stages * variants * len(BATCHES), "method": "cli", "runs": runs,
                         "total_s": seconds, "status": got[-1]["status"], "objective": got[-1]["objective"],
                         "target_s": limit, "note": f"servopt solve --json, backend {got[-1]['backend']}"})
            print(f"target    {stages:3d} x {variants:2d}  servopt solve --json: {seconds * 1000:.2f} ms "
                  f"(target {limit * 1000:g} ms, backend {got[-1]['backend']})", flush=True)


VERSUS_FIELDS = ["family", "instance", "method", "seconds", "cpu_s", "gurobi_runtime_s", "objective", "agrees",
                 "status", "median_s", "p90_s", "max_s", "median_cpu_s", "max_cpu_s", "instances",
                 "faster_than_gurobi", "load_avg_1min", "cpus"]
VERSUS_METHODS = ("servopt-dp", "gurobi-mck", "gurobi-mck-1thread")


def tight_sla(problem: Any, share: float = 0.3) -> Any:
    """``problem`` with its SLA between the fastest choices (0) and the unconstrained best choices (1)."""
    from dataclasses import replace

    o = problem.options()
    weight = o.latency_ms + o.queue_ms
    fastest = best = 0.0
    for sl in o.stage_slices:
        ok = np.flatnonzero(o.feasible[sl]) + sl.start
        fastest += float(weight[ok].min())
        best += float(weight[ok[int(np.argmax(o.value[ok]))]])
    return replace(problem, sla_ms=round(fastest + share * max(0.0, best - fastest), 2))


def versus_gurobi(count: int, env: Any, out: Path, png: Path) -> list[dict[str, Any]]:
    """servopt's ``solve_seconds`` (``servopt.solve(problem, "dp")`` on a fresh problem, as the CLI runs it) and
    Gurobi on the plain MCKP of the same options (:func:`ipa_gurobi_model.solve_mck`: default threads and one
    thread; its options are servopt's, prepared outside its timing; wall and process CPU seconds) on ``count``
    9 x 9 x 7 instances per family:
    ``ipa`` (:func:`ipa_instance`) and ``tight`` (the same with a binding SLA, :func:`tight_sla`). Methods
    alternate in order per instance; every objective is compared with servopt's."""
    import os

    import servopt
    from ipa_gurobi_model import solve_mck

    load = [os.getloadavg()[0]]
    families = {"ipa": lambda seed: ipa_instance(9, 9, seed=seed),
                "tight": lambda seed: tight_sla(ipa_instance(9, 9, seed=seed))}
    servopt.solve(ipa_instance(2, 2), "dp")  # warm-up: imports, Gurobi's licence check
    solve_mck(ipa_instance(2, 2), env)
    rows: list[dict[str, Any]] = []
    for family, make in families.items():
        for seed in range(count):
            got: dict[str, dict[str, Any]] = {}
            for method in (VERSUS_METHODS if seed % 2 == 0 else VERSUS_METHODS[::-1]):
                problem = make(seed)
                if method == "servopt-dp":
                    cpu = time.process_time()
                    sol = servopt.solve(problem, "dp")
                    got[method] = {"seconds": sol.solve_seconds, "cpu_s": time.process_time() - cpu,
                                   "objective": sol.objective, "status": sol.status.value}
                else:
                    r = solve_mck(problem, env, threads=1 if method.endswith("1thread") else None)
                    got[method] = {"seconds": r.solve_s, "cpu_s": r.cpu_s, "gurobi_runtime_s": r.runtime_s,
                                   "objective": r.objective, "status": r.status}
            if (seed + 1) % 50 == 0 or seed + 1 == count:
                print(f"{family}: {seed + 1}/{count} instances", file=sys.stderr, flush=True)
            ref = got["servopt-dp"]["objective"]
            for method, g in got.items():
                mine = g["objective"]
                same = (mine is None and ref is None) or (
                    mine is not None and ref is not None and abs(mine - ref) <= 1e-6 * max(1, abs(ref)))
                rows.append({"family": family, "instance": seed, "method": method, "agrees": same, **g})
    load.append(os.getloadavg()[0])
    summary = []
    for family in families:
        gurobi = {r["instance"]: r["seconds"] for r in rows if r["family"] == family and r["method"] == "gurobi-mck"}
        for method in VERSUS_METHODS:
            secs = [r["seconds"] for r in rows if r["family"] == family and r["method"] == method]
            cpus = [r["cpu_s"] for r in rows if r["family"] == family and r["method"] == method]
            mine = [r for r in rows if r["family"] == family and r["method"] == method]
            summary.append({"family": family, "instance": "all", "method": method, "median_s": median(secs),
                            "p90_s": float(np.quantile(secs, 0.9)), "max_s": max(secs), "median_cpu_s": median(cpus),
                            "max_cpu_s": max(cpus), "instances": len(secs),
                            "agrees": all(r["agrees"] for r in mine),
                            "faster_than_gurobi": sum(r["seconds"] <= gurobi[r["instance"]] for r in mine),
                            "load_avg_1min": round(sum(load) / 2, 2), "cpus": os.cpu_count()})
    write_csv(summary + rows, VERSUS_FIELDS, out)
    plot_versus(rows, summary, png)
    return summary


def plot_versus(rows: list[dict[str, Any]], summary: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    families = sorted({r["family"] for r in rows})
    fig, axes = plt.subplots(1, len(families), figsize=(6 * len(families), 4.2), squeeze=False)
    for ax, family in zip(axes[0], families):
        for method, color in zip(VERSUS_METHODS, ("C0", "C1", "C3")):
            secs = np.sort([r["seconds"] for r in rows if r["family"] == family and r["method"] == method]) * 1e3
            s = next(x for x in summary if x["family"] == family and x["method"] == method)
            ax.plot(secs, np.arange(1, secs.size + 1) / secs.size, color=color,
                    label=f"{method}: median {s['median_s'] * 1e3:.2f} ms, max {s['max_s'] * 1e3:.2f} ms")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("solve time per instance, ms (servopt: solve_seconds; Gurobi: optimize())")
        ax.set_ylabel("fraction of instances")
        ax.set_title(f"9 x 9 x 7 pipelines, {family} SLA ({secs.size} instances)")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def published(rows: list[dict[str, Any]]) -> None:
    import csv

    if not IPA_FIG13.exists():
        print(f"note: {IPA_FIG13} not found; IPA's published times are left out", flush=True)
        return
    with IPA_FIG13.open(newline="") as fh:
        for r in csv.DictReader(fh):
            rows.append({"family": "ipa-grid", "stages": int(r["tasks"]), "variants": int(r["models_per_task"]),
                         "method": "ipa-published", "total_s": float(r["mean_decision_time_s"]),
                         "note": "IPA paper Fig. 13: mean decision time incl. model building; batch sizes and CPU "
                                 "unknown"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="repeated runs per point (medians)")
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds per MILP solve")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run (a smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the CSV and PNG (default "
                        "benchmarks/results; with --quick a new temporary folder)")
    parser.add_argument("--versus-gurobi", type=int, metavar="N", default=None,
                        help="only compare servopt's solve_seconds with Gurobi's MCKP on N 9x9x7 instances per "
                             "family (pipeline_vs_gurobi.csv, docs/img/pipeline_vs_gurobi.png)")
    args = parser.parse_args(argv)
    args.out = output_dir(args.out, quick=args.quick, name="bench_pipeline")
    if args.versus_gurobi is not None:
        env = _gurobi_env()
        if env is None:
            print("gurobipy is not installed: nothing to compare", file=sys.stderr)
            return 1
        png = args.out / "pipeline_vs_gurobi.png" if args.out != RESULTS else ROOT / "docs" / "img" / \
            "pipeline_vs_gurobi.png"
        for r in versus_gurobi(args.versus_gurobi, env, args.out / "pipeline_vs_gurobi.csv", png):
            print(f"{r['family']:6s} {r['method']:20s} median {r['median_s'] * 1e3:7.3f} ms  p90 "
                  f"{r['p90_s'] * 1e3:7.3f}  max {r['max_s'] * 1e3:8.3f} ms  CPU median "
                  f"{r['median_cpu_s'] * 1e3:6.3f} max {r['max_cpu_s'] * 1e3:7.3f} ms  no slower than gurobi-mck on "
                  f"{r['faster_than_gurobi']}/{r['instances']}  objectives agree: {r['agrees']}")
        print(f"wrote {args.out / 'pipeline_vs_gurobi.csv'} and {png}")
        return 0

    from servopt.backends import available

    env = _gurobi_env()
    milp = [f"milp:{b}" for b in ("highs", "cpsat", "scip", "gurobi", "cvxpy") if b in available()]
    direct = (["gurobi-mck", "ipa-gurobi"] if env is not None else [])
    runs = 1 if args.quick else args.runs
    grid, milp_grid, beyond = (QUICK_GRID, QUICK_GRID, QUICK_BEYOND) if args.quick else (IPA_GRID, MILP_GRID, BEYOND)
    targets = QUICK_TARGETS if args.quick else TARGETS
    rows: list[dict[str, Any]] = []
    for method in ["dp", "greedy", "bruteforce", *milp, *direct]:  # warm-up: imports, licence checks
        one(method, 2, 2, env, args.time_limit)
    measure("ipa-grid", grid, ["dp", "greedy", "bruteforce", *direct], runs, args.time_limit, env, rows)
    measure("ipa-grid", milp_grid, milp, runs, args.time_limit, env, rows)
    measure("beyond", beyond, ["dp", "greedy", *milp, *direct], runs, args.time_limit, env, rows)
    product = [m for m in milp if m == "milp:highs"]  # the fastest MILP backend on the product chain
    measure("product", QUICK_GRID if args.quick else PRODUCT, ["dp", *product, "bruteforce", "greedy"], runs,
            args.time_limit, env, rows, accuracy="product")
    published(rows)
    cli_targets(targets, runs, rows)
    if env is not None:
        mck = [r for r in rows if r["method"] == "gurobi-mck" and (r["stages"], r["variants"]) in targets]
        for r in mck:
            print(f"gurobi-mck {r['stages']} x {r['variants']}: build + solve {r['total_s'] * 1000:.2f} ms "
                  f"(solve {r['solve_s'] * 1000:.2f} ms)", flush=True)
    write_csv(rows, FIELDS, args.out / "pipeline.csv")
    plot(rows, args.out / "pipeline.png")
    print(f"wrote {args.out / 'pipeline.csv'} and {args.out / 'pipeline.png'}")
    return 0


def _gurobi_env() -> Any:
    try:
        import gurobipy as gp
    except ImportError:
        return None
    env = gp.Env(empty=True)
    env.setParam("OutputFlag", 0)
    env.start()
    return env


# ------------------------------------------------------------------------------------------------------ plot
STYLE = {"dp": ("C0", "-"), "ipa-published": ("k", "--"), "ipa-gurobi": ("C3", ":"), "gurobi-mck": ("C1", "-."),
         "milp:highs": ("C2", "-"), "milp:cpsat": ("C4", "-"), "milp:scip": ("C5", "-"), "milp:gurobi": ("C6", "-"),
         "milp:cvxpy": ("C7", "-"), "greedy": ("C8", "-"), "bruteforce": ("C9", "-")}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    timed = [r for r in rows if isinstance(r.get("total_s"), float) and math.isfinite(r["total_s"])]

    ax = axes[0][0]  # IPA's grid: published vs transcription vs dp, per variant count
    for i, m in enumerate((3, 5, 7, 9)):
        for method, style in (("ipa-published", "--"), ("ipa-gurobi", ":"), ("dp", "-")):
            pts = sorted((r["stages"], r["total_s"]) for r in timed if r["family"] == "ipa-grid"
                         and r["method"] == method and r["variants"] == m and r.get("status", "optimal") in
                         ("optimal", ""))
            if pts:
                ax.plot(*zip(*pts), style, color=f"C{i}", marker="o", ms=3,
                        label=f"{method}, {m} variants" if method != "ipa-published" else f"IPA Fig. 13, {m} var.")
    ax.set_yscale("log")
    ax.set_xlabel("stages (IPA's tasks)")
    ax.set_ylabel("decision time, s (build + solve, median)")
    ax.set_title("IPA's grid: IPA's published times, IPA's model on Gurobi (pip licence), servopt dp")
    ax.legend(fontsize=6, ncol=3)

    ax = axes[0][1]  # 9 variants per stage, every method
    for method, (color, style) in STYLE.items():
        pts = sorted((r["stages"], r["total_s"]) for r in timed if r["family"] == "ipa-grid" and r["method"] == method
                     and r["variants"] == 9 and r.get("status", "optimal") in ("optimal", "feasible", ""))
        if pts:
            ax.plot(*zip(*pts), style, color=color, marker="o", ms=3, label=method)
    ax.set_yscale("log")
    ax.set_xlabel("stages, 9 variants each, 7 batch sizes")
    ax.set_ylabel("build + solve, s (median)")
    ax.set_title("IPA's grid, 9 variants per stage: every method")
    ax.legend(fontsize=7)

    ax = axes[1][0]  # beyond: time vs options
    for method, (color, style) in STYLE.items():
        pts = sorted((r["options"], r["total_s"]) for r in timed if r["method"] == method and r.get("options")
                     and (r["family"] == "beyond" or (r["family"] == "ipa-grid" and r["stages"] == r["variants"]))
                     and r.get("status") in ("optimal", "feasible"))
        if pts:
            ax.plot(*zip(*pts), style, color=color, marker="o", ms=3, label=method)
    for method, (color, _) in STYLE.items():
        pts = sorted((r["options"], r["total_s"]) for r in timed if r["method"] == method and r["family"] == "product"
                     and r.get("status") == "optimal")
        if pts and method != "bruteforce":
            ax.plot(*zip(*pts), "--", color=color, marker="s", ms=3, label=f"{method}, accuracy product")
    for r in timed:
        if r["family"] == "target":
            ax.scatter([r["options"]], [r["total_s"]], marker="*", s=120, color="C0", zorder=5)
            ax.scatter([r["options"]], [r["target_s"]], marker="_", s=300, color="r", zorder=5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("options (stages x variants x batch sizes; S x S up to 30, then 50 x 50, 100 x 50)")
    ax.set_ylabel("build + solve, s (median)")
    ax.set_title("beyond IPA's grid (stars: servopt solve --json; red bars: targets)")
    ax.legend(fontsize=7)

    ax = axes[1][1]  # greedy gap
    pts = sorted((r["options"], r["gap"]) for r in rows if r["method"] == "greedy"
                 and isinstance(r.get("gap"), float) and math.isfinite(r["gap"]))
    if pts:
        ax.scatter(*zip(*pts), s=10, color="C8")
    ax.set_xscale("log")
    ax.set_xlabel("options")
    ax.set_ylabel("(optimum − greedy) / max(1, |optimum|)")
    ax.set_title("greedy policy: optimality gap")
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
