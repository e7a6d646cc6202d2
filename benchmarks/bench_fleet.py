"""Fleet planning: the exact pattern MILP against three baselines, 5 -> 500 models, up to 1,000 GPUs of 5 types.

    python benchmarks/bench_fleet.py [--time-limit 60] [--quick] [--out DIR]

Random fleets (seeded): 5 GPU types (two with MIG profiles), 2 GPUs per model per type, capped at 1,000 GPUs in
all; above 200 models the rates are scaled down and the 1,000 GPUs split by type so that a dedicated-GPU plan
provably fits (:func:`make_problem`); models with random rates, SLOs and latency tables; no pattern caps. Per size: the MILP's status, cost, time,
how its pattern set was made (``enumeration``: complete; ``column generation``: LP bound, then the columns that
can still improve), its proven ``lower_bound`` and the gap to it (``bound_gap_pct``, every row), and each
baseline's cost gap to the MILP's cost (``gap_pct``). ``--time-limit`` bounds the pattern search and the MILP
solve of each row. Writes ``fleet.csv`` and ``fleet.png`` under ``--out`` (default ``benchmarks/results/``;
``--quick``, two tiny fleets, writes to a new temporary folder, named on stderr, unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import output_dir, pyplot, save_figure, write_csv  # noqa: E402

SIZES = (5, 10, 20, 50, 100, 200, 500)
QUICK = (5, 8)
FIELDS = ("models", "gpus", "types", "rate_factor", "time_limit_s", "method", "status", "cost", "lower_bound", "bound_gap_pct", "gap_pct", "seconds",
          "patterns", "columns", "plan_ok")


#: rows above this many models size the fleet from a dedicated-GPU plan (:func:`make_problem`)
SCALE_ABOVE = 200
#: the most GPUs of any row
MAX_GPUS = 1000
#: the rate factors tried above :data:`SCALE_ABOVE` models, largest first
RATE_FACTORS = tuple(round(1 - 0.05 * k, 2) for k in range(20))
GPU_SPECS = (("A100-80GB", 81920, 3.67, 1.0, True), ("H100-80GB", 81559, 6.98, 0.6, True),
             ("L4", 23034, 0.80, 2.0, False), ("A10G", 23028, 1.01, 1.6, False), ("T4", 15360, 0.53, 3.0, False))


def _mapping(n: int, seed: int, factor: float, counts: dict[str, int]) -> dict[str, Any]:
    """The problem mapping of the ``n``-model fleet: every rate times ``factor``, ``counts[type]`` GPUs per type."""
    rng = random.Random(seed)
    mig = [{"profile": "1g.10gb", "compute": 1, "memory_mb": 9856},
           {"profile": "3g.40gb", "compute": 3, "memory_mb": 40192}]
    types = [{"name": t, "count": counts[t], "memory_mb": m, "price_per_hour": p, **({"mig": mig} if g else {})}
             for t, m, p, _, g in GPU_SPECS]
    models = []
    for i in range(n):
        l1 = rng.uniform(1.0, 20.0)
        inst = rng.choice([500, 1500, 4000, 8000])
        slo = rng.choice(["p99", "mean"])
        perf = {t: {"latency_ms": {b: round(l1 * s * f, 3) for b, f in ((1, 1.0), (4, 1.6), (16, 4.0))},
                    "memory_mb": {"instance": inst, "per_batch": 20}}
                for t, _, _, s, _ in GPU_SPECS if rng.random() < 0.8}
        perf = perf or {"A100-80GB": {"latency_ms": {1: round(l1, 3)}, "memory_mb": {"instance": inst}}}
        rate = rng.choice([20, 100, 400, 1500])
        models.append({"name": f"m{i}", "rate_rps": rate if factor == 1 else round(rate * factor, 3),
                       "slo_ms": round(l1 * rng.uniform(3.0, 8.0), 3), "slo": slo, "performance": perf})
    return {"problem": "fleet", "objective": "cost", "headroom": 0.2, "gpu_types": types, "models": models}


def make_problem(n: int, seed: int = 0, scale_above: int = SCALE_ABOVE, max_gpus: int = MAX_GPUS
                 ) -> tuple[Any, float]:
    """A random fleet of ``n`` models on 5 GPU types (at most 1,000 GPUs), feasible by construction above 200 models.

    Up to :data:`SCALE_ABOVE` models every type has ``min(2 n, 200)`` GPUs (10 per model up to 100 models, then
    1,000 in all) and each model draws its rate from {20, 100, 400, 1500} rps: the instances of the earlier
    results, which the MILP's verified plans prove feasible. The demand grows with ``n`` while the fleet
    cannot: at 500 models with 200 GPUs per type the instance very likely has no plan (its LP relaxation leaves
    ~24 models' demand uncovered; not proven), and dedicated GPUs alone would need 2,423. So above
    :data:`SCALE_ABOVE` models the fleet is sized from a certificate: every rate is multiplied by the largest
    factor in :data:`RATE_FACTORS` (1, 0.95, ..., 0.05) at which ``fleet_one_per_gpu`` on an unlimited fleet
    (each model on dedicated whole GPUs of its cheapest type per capacity) uses at most :data:`MAX_GPUS` GPUs;
    each type gets the GPUs that plan uses, and the rest of the 1,000 are split evenly over the types (spec
    order takes the remainder). ``fleet_one_per_gpu`` then finds that same plan within the fleet (checked here,
    with the exact checker), which proves the instance feasible; the MILP's start columns (every one-model
    content) contain it. Latencies, memory, SLOs and which types serve which model are drawn as for the
    smaller rows, from the same seeded stream. ``scale_above`` and ``max_gpus`` (defaults the two constants)
    are parameters for tests. Returns the problem and the rate factor used.
    """
    from collections import Counter

    from servopt.formulations.registry import problem_from_mapping
    from servopt.policies import run_policy

    name = f"bench_fleet_{n}.yaml"
    if n <= scale_above:
        return problem_from_mapping(_mapping(n, seed, 1.0, {t[0]: min(2 * n, 200) for t in GPU_SPECS}), name), 1.0
    unlimited = {t[0]: 100 * n for t in GPU_SPECS}
    for factor in RATE_FACTORS:
        base = run_policy(problem_from_mapping(_mapping(n, seed, factor, unlimited), name), "fleet_one_per_gpu")
        if base.plan is None:
            raise RuntimeError(f"bench_fleet: fleet_one_per_gpu finds no plan for {n} models on an unlimited fleet")
        used = Counter(g.gpu_type for g in base.plan.gpus)
        spare = max_gpus - sum(used.values())
        if spare < 0:
            continue
        counts = {t[0]: used[t[0]] + spare // len(GPU_SPECS) + (k < spare % len(GPU_SPECS))
                  for k, t in enumerate(GPU_SPECS)}
        p = problem_from_mapping(_mapping(n, seed, factor, counts), name)
        check = run_policy(p, "fleet_one_per_gpu")
        if check.plan is None or p.verify(check.plan):
            raise RuntimeError(f"bench_fleet: fleet_one_per_gpu does not fit the fleet sized for it ({counts})")
        return p, factor
    raise RuntimeError(f"bench_fleet: no rate factor in {RATE_FACTORS} fits {n} models on {max_gpus} GPUs")


def _read_rows(path: Path, skip: set[int]) -> list[dict[str, Any]]:
    """The rows of ``path`` whose size is not in ``skip``, numbers parsed (rows written before the ``rate_factor``
    and ``time_limit_s`` columns existed were unscaled, at ``--time-limit 60``)."""
    import csv

    if not path.exists():
        return []
    out = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if int(r["models"]) in skip:
                continue
            row: dict[str, Any] = dict(r)
            row.setdefault("rate_factor", "1")
            row.setdefault("time_limit_s", "60")
            for k in ("models", "gpus", "types"):
                row[k] = int(row[k])
            for k in ("rate_factor", "time_limit_s", "cost", "lower_bound", "bound_gap_pct", "gap_pct", "seconds"):
                row[k] = float(row[k]) if row.get(k) not in (None, "", "None") else None
            out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    import servopt
    from servopt.policies import run_policy

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-limit", type=float, default=45.0)
    parser.add_argument("--quick", action="store_true", help="two tiny fleets (a smoke test)")
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="model counts (default 5 .. 500)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the CSV and PNG (default benchmarks/results; with --quick a new temporary "
                             "folder)")
    parser.add_argument("--update", action="store_true",
                        help="keep the rows of the other sizes from the existing fleet.csv (rerun only --sizes)")
    args = parser.parse_args(argv)
    args.out = output_dir(args.out, quick=args.quick, name="bench_fleet")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    sizes = QUICK if args.quick else tuple(args.sizes or SIZES)
    kept = _read_rows(args.out / "fleet.csv", set(sizes)) if args.update else []
    for n in sizes:
        p, factor = make_problem(n)
        p = dataclasses.replace(p, search_time_s=args.time_limit)
        gpus = sum(g.count for g in p.gpu_types)
        t0 = time.perf_counter()
        sol = servopt.solve(p, time_limit_s=args.time_limit)
        best = sol.objective
        gen = p._generated
        lb = sol.plan.lower_bound if sol.plan is not None else gen.lower_bound
        base = {"models": n, "gpus": gpus, "types": len(p.gpu_types), "rate_factor": factor,
                "time_limit_s": args.time_limit, "lower_bound": lb}

        def bound_gap(cost: float | None) -> float | None:
            return None if cost is None or lb is None else 100 * (cost - lb) / cost

        status = sol.status.value
        if sol.plan is None and not (gen.complete or gen.infeasible):
            status = "no plan found"  # the generated columns cover no plan: not a proof that none exists
        rows.append({**base, "method": "milp", "status": status, "cost": best, "gap_pct": 0.0,
                     "bound_gap_pct": bound_gap(best), "seconds": time.perf_counter() - t0,
                     "patterns": gen.method, "columns": sum(len(v) for v in gen.patterns.values()),
                     "plan_ok": sol.plan is not None and p.verify(sol.plan) == []})
        for name in ("fleet_ffd", "fleet_one_per_gpu", "fleet_cheapest_type"):
            t0 = time.perf_counter()
            b = run_policy(p, name)
            gap = (100 * (b.objective - best) / best) if (b.objective is not None and best) else None
            rows.append({**base, "method": name, "status": b.status.value, "cost": b.objective, "gap_pct": gap,
                         "bound_gap_pct": bound_gap(b.objective), "seconds": time.perf_counter() - t0,
                         "patterns": "", "columns": "",
                         "plan_ok": b.plan is not None and p.verify(b.plan) == []})
        for r in rows[-4:]:
            print(f"{n:4d} models {gpus:5d} GPUs rates x{factor:g} {r['method']:20s} {r['status']:10s} cost {r['cost']} "
                  f"lb {r['lower_bound']} bound gap {r['bound_gap_pct']} % gap {r['gap_pct']} % "
                  f"{r['seconds']:.3f} s", flush=True)
    rows = sorted(kept + rows, key=lambda r: r["models"])  # stable: each size keeps its method order
    write_csv(rows, FIELDS, args.out / "fleet.csv")
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for i, m in enumerate(("milp", "fleet_ffd", "fleet_one_per_gpu", "fleet_cheapest_type")):
        mine = [r for r in rows if r["method"] == m]
        pts = [(r["models"], r["bound_gap_pct"]) for r in mine if r["bound_gap_pct"] is not None]
        if pts:
            a.plot([x for x, _ in pts], [g for _, g in pts], marker="o", color=f"C{i}", label=m)
        pts = [(r["models"], r["seconds"]) for r in mine if r["cost"] is not None]
        if pts:
            b.plot([x for x, _ in pts], [s for _, s in pts], marker="o", color=f"C{i}", label=m)
    a.set_xscale("log"), a.set_xlabel("models")
    a.set_ylabel("cost above the proven lower bound, %"), a.legend(fontsize=7)
    b.set_xscale("log"), b.set_yscale("log"), b.set_xlabel("models"), b.set_ylabel("seconds")
    fig.tight_layout()
    save_figure(fig, args.out / "fleet.png")
    print(f"wrote {args.out / 'fleet.csv'} and {args.out / 'fleet.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
