"""Overhead of servopt's neutral model over hand-written native solver code, and ``import servopt`` time.

The model is a 9-stage x 9-variant x 7-batch multiple-choice knapsack (567 binaries, 9 choice rows, an SLA row
and a core-budget row; see ``_mck.py``). It is built and solved, in interleaved rounds so that machine load hits
every approach alike, by:

* ``native-arrays``  highspy, numpy CSR arrays passed in one ``passModel`` call (the fastest highspy code);
* ``native-expr``    highspy's own modelling API (``addBinaries``, ``qsum``, ``addConstr``);
* ``native``         CP-SAT's ``cp_model`` API (``new_bool_var``, ``add_exactly_one``, ``weighted_sum``);
* ``servopt-ops``    servopt ``Model`` with operators and ``quicksum``, then ``servopt.solve(m, backend)``;
* ``servopt-rows``   servopt ``Model`` with the ``add_row`` fast path, then ``servopt.solve``.

Solver settings are the same on both sides (gap 0, seed 0, default threads, no log). Reported per approach:
medians of the model-building time, the backend build time (servopt: arrays, capability check and native
model), the solve time and the total; the overhead ratio is servopt's total over the native total.

``import servopt`` is timed in fresh interpreters (median of 10), which also check that no solver is imported.

Usage::

    python benchmarks/bench_overhead.py [--rounds 15]

Writes ``benchmarks/results/overhead.csv`` and ``overhead.png``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mck import MCK, make_mck  # noqa: E402
from _util import RESULTS, pyplot, save_figure, write_csv  # noqa: E402


# ------------------------------------------------------------------------------------------- servopt models
def servopt_operators(inst: MCK):
    from servopt import Model, quicksum

    S, V, B = inst.shape
    m = Model("mck")
    x = {(s, v, b): m.add_binary(f"x_{s}_{v}_{b}") for s in range(S) for v in range(V) for b in range(B)}
    for s in range(S):
        m.add_constraint(quicksum(x[s, v, b] for v in range(V) for b in range(B)) == 1, name=f"one_{s}")
    lat, cores, value = inst.latency.tolist(), inst.cores.tolist(), inst.value.tolist()
    m.add_constraint(quicksum(lat[s][v][b] * x[s, v, b] for (s, v, b) in x) <= inst.sla, name="sla")
    m.add_constraint(quicksum(cores[s][v][b] * x[s, v, b] for (s, v, b) in x) <= inst.budget, name="budget")
    m.maximize(quicksum(value[s][v][b] * x[s, v, b] for (s, v, b) in x))
    return m


def servopt_rows(inst: MCK):
    from servopt import Model

    S, V, B = inst.shape
    n = S * V * B
    m = Model("mck")
    for s in range(S):
        for v in range(V):
            for b in range(B):
                m.add_binary(f"x_{s}_{v}_{b}")
    per_stage = V * B
    for s in range(S):
        m.add_row(np.arange(s * per_stage, (s + 1) * per_stage), np.ones(per_stage), lb=1, ub=1, name=f"one_{s}")
    cols = np.arange(n)
    m.add_row(cols, inst.latency.ravel(), ub=inst.sla, name="sla")
    m.add_row(cols, inst.cores.ravel(), ub=inst.budget, name="budget")
    m.set_objective_arrays(cols, inst.value.ravel(), "max")
    return m


def run_servopt(build: Callable, backend: str) -> Callable[[MCK], tuple[float, float, float, float]]:
    def run(inst: MCK) -> tuple[float, float, float, float]:
        from servopt import solve

        t0 = time.perf_counter()
        m = build(inst)
        t1 = time.perf_counter()
        r = solve(m, backend)
        t2 = time.perf_counter()
        assert r.status.value == "optimal", r
        return t1 - t0, (t2 - t1) - r.solve_seconds, r.solve_seconds, float(r.objective)

    return run


# ------------------------------------------------------------------------------------------ native models
def native_highs_arrays(inst: MCK) -> tuple[float, float, float, float]:
    from highspy._core import _Highs

    S, V, B = inst.shape
    n = S * V * B
    t0 = time.perf_counter()
    h = _Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    per_stage = V * B
    starts = np.concatenate([np.arange(0, n + 1, per_stage), [2 * n, 3 * n]]).astype(np.int32)
    index = np.concatenate([np.arange(n), np.arange(n), np.arange(n)]).astype(np.int32)
    value = np.concatenate([np.ones(n), inst.latency.ravel(), inst.cores.ravel()]).astype(float)
    row_lb = np.concatenate([np.ones(S), [-np.inf, -np.inf]])
    row_ub = np.concatenate([np.ones(S), [inst.sla, inst.budget]]).astype(float)
    h.passModel(n, S + 2, len(index), 2, -1, 0.0, inst.value.ravel().astype(float), np.zeros(n), np.ones(n),
                row_lb, row_ub, starts, index, value, np.ones(n, dtype=np.int32))
    t1 = time.perf_counter()
    h.run()
    t2 = time.perf_counter()
    return t1 - t0, 0.0, t2 - t1, float(h.getInfo().objective_function_value)


def native_highs_expr(inst: MCK) -> tuple[float, float, float, float]:
    import highspy

    S, V, B = inst.shape
    t0 = time.perf_counter()
    h = highspy.Highs()
    h.silent()
    h.setOptionValue("mip_rel_gap", 0.0)
    x = h.addBinaries(S * V * B)
    keys = [(s, v, b) for s in range(S) for v in range(V) for b in range(B)]
    lat, cores, value = inst.latency.tolist(), inst.cores.tolist(), inst.value.tolist()
    for s in range(S):
        h.addConstr(h.qsum(x[s * V * B + k] for k in range(V * B)) == 1)
    h.addConstr(h.qsum(lat[s][v][b] * x[i] for i, (s, v, b) in enumerate(keys)) <= inst.sla)
    h.addConstr(h.qsum(cores[s][v][b] * x[i] for i, (s, v, b) in enumerate(keys)) <= inst.budget)
    h.setObjective(h.qsum(value[s][v][b] * x[i] for i, (s, v, b) in enumerate(keys)), highspy.ObjSense.kMaximize)
    t1 = time.perf_counter()
    h.run()
    t2 = time.perf_counter()
    return t1 - t0, 0.0, t2 - t1, float(h.getInfo().objective_function_value)


def native_cpsat(inst: MCK) -> tuple[float, float, float, float]:
    from ortools.sat.python import cp_model

    S, V, B = inst.shape
    t0 = time.perf_counter()
    m = cp_model.CpModel()
    x = {(s, v, b): m.new_bool_var(f"x_{s}_{v}_{b}") for s in range(S) for v in range(V) for b in range(B)}
    for s in range(S):
        m.add_exactly_one(x[s, v, b] for v in range(V) for b in range(B))
    keys = list(x)
    xs = [x[k] for k in keys]
    lat, cores, value = inst.latency.tolist(), inst.cores.tolist(), inst.value.tolist()
    m.add(cp_model.LinearExpr.weighted_sum(xs, [lat[s][v][b] for s, v, b in keys]) <= inst.sla)
    m.add(cp_model.LinearExpr.weighted_sum(xs, [cores[s][v][b] for s, v, b in keys]) <= inst.budget)
    m.maximize(cp_model.LinearExpr.weighted_sum(xs, [value[s][v][b] for s, v, b in keys]))
    solver = cp_model.CpSolver()
    solver.parameters.random_seed = 0  # servopt's default seed, so both sides search alike
    t1 = time.perf_counter()
    status = solver.solve(m)
    t2 = time.perf_counter()
    assert status == cp_model.OPTIMAL
    return t1 - t0, 0.0, t2 - t1, float(solver.objective_value)


APPROACHES: list[tuple[str, str, Callable]] = [
    ("highs", "native-arrays", native_highs_arrays),
    ("highs", "native-expr", native_highs_expr),
    ("highs", "servopt-ops", run_servopt(servopt_operators, "highs")),
    ("highs", "servopt-rows", run_servopt(servopt_rows, "highs")),
    ("cpsat", "native", native_cpsat),
    ("cpsat", "servopt-ops", run_servopt(servopt_operators, "cpsat")),
    ("cpsat", "servopt-rows", run_servopt(servopt_rows, "cpsat")),
]


# ------------------------------------------------------------------------------------------- import time
IMPORT_PROBE = (
    "import sys, time; t = time.perf_counter(); c = time.process_time(); import servopt; "
    "dt = time.perf_counter() - t; dc = time.process_time() - c; "
    "bad = sorted(m for m in ('ortools', 'highspy', 'gurobipy', 'cvxpy') if m in sys.modules); "
    "print(dt, dc, ','.join(bad))"
)


def import_times(runs: int = 10) -> tuple[list[float], list[float], list[float]]:
    """Seconds spent in ``import servopt`` (wall and CPU) and wall seconds of the whole fresh interpreter."""
    inner, cpu, wall = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True)
        wall.append(time.perf_counter() - t0)
        fields = out.stdout.split()
        if len(fields) > 2:
            raise SystemExit(f"import servopt imported solver modules: {fields[2]}")
        inner.append(float(fields[0]))
        cpu.append(float(fields[1]))
    return inner, cpu, wall


# ------------------------------------------------------------------------------------------------- main
def measure(rounds: int) -> list[dict[str, object]]:
    inst = make_mck()
    objectives = {}
    for backend, name, fn in APPROACHES:  # warm-up: imports and first-call costs (Gurobi-style licence, JIT)
        objectives[(backend, name)] = fn(inst)[3]
    if len({round(v, 6) for v in objectives.values()}) != 1:
        raise SystemExit(f"approaches disagree on the optimum: {objectives}")
    samples: dict[tuple[str, str], list[tuple[float, float, float]]] = {k[:2]: [] for k in APPROACHES}
    for r in range(rounds):
        order = APPROACHES if r % 2 == 0 else APPROACHES[::-1]
        for backend, name, fn in order:
            model_s, build_s, solve_s, _ = fn(inst)
            samples[(backend, name)].append((model_s, build_s, solve_s))
    rows = []
    for backend, name, _ in APPROACHES:
        arr = np.array(samples[(backend, name)]) * 1000.0
        rows.append({
            "case": "mck-9x9x7",
            "backend": backend,
            "approach": name,
            "model_ms": float(np.median(arr[:, 0])),
            "backend_build_ms": float(np.median(arr[:, 1])),
            "build_ms": float(np.median(arr[:, 0] + arr[:, 1])),
            "solve_ms": float(np.median(arr[:, 2])),
            "total_ms": float(np.median(arr.sum(axis=1))),
            "runs": rounds,
            "objective": objectives[(backend, name)],
        })
    for row in rows:
        native = next(r for r in rows
                      if r["backend"] == row["backend"] and r["approach"] in ("native", "native-arrays"))
        row["ratio_total"] = row["total_ms"] / native["total_ms"]
        row["ratio_build"] = row["build_ms"] / native["build_ms"]
    return rows


def write_rows(path: Path, rows: list[dict[str, object]]) -> None:
    """Every key any row has becomes a column, in order of first appearance."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    write_csv(rows, fields, path)


def plot(path: Path, rows: list[dict[str, object]], imports: tuple[list[float], list[float]]) -> None:
    plt = pyplot()
    mck = [r for r in rows if r["case"] == "mck-9x9x7"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    labels = [f"{r['backend']}\n{r['approach']}" for r in mck]
    y = np.arange(len(mck))
    left = np.zeros(len(mck))
    for key, colour, label in (("model_ms", "#4c72b0", "model building"),
                               ("backend_build_ms", "#dd8452", "servopt arrays + backend build"),
                               ("solve_ms", "#55a868", "solve")):
        vals = np.array([r[key] for r in mck])
        ax.barh(y, vals, left=left, color=colour, label=label)
        left += vals
    for i, r in enumerate(mck):
        ax.text(left[i] + 1, i, f"{r['total_ms']:.1f} ms  (x{r['ratio_total']:.2f})", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds (median of each part; label: median total)")
    ax.set_title("9x9x7 multiple-choice knapsack: build + solve, ratio to native")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlim(0, left.max() * 1.35)
    wall_ms, cpu_ms = np.array(imports[0]) * 1000.0, np.array(imports[1]) * 1000.0
    ax2.boxplot([wall_ms, cpu_ms], tick_labels=["wall", "CPU"])
    ax2.axhline(300, color="red", linestyle="--", linewidth=1)
    ax2.text(0.6, 295, "target 300 ms", color="red", fontsize=8, va="top")
    ax2.set_ylabel("milliseconds in `import servopt` (fresh interpreter)")
    ax2.set_ylim(0, max(330.0, float(wall_ms.max()) * 1.1))
    ax2.set_title(f"import servopt ({len(wall_ms)} runs)")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per approach (median)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    rows = measure(args.rounds)
    inner, cpu, wall = import_times(10)
    rows.append({"case": "import servopt", "backend": "-", "approach": "fresh interpreter",
                 "total_ms": statistics.median(inner) * 1000.0, "runs": len(inner),
                 "cpu_ms": statistics.median(cpu) * 1000.0, "wall_ms": statistics.median(wall) * 1000.0})
    load_after = os.getloadavg()[0]
    for row in rows:
        row["cpus"] = os.cpu_count()
        row["load_avg_1min"] = round((load_before + load_after) / 2, 2)
    write_rows(args.out / "overhead.csv", rows)
    plot(args.out / "overhead.png", rows, (inner, cpu))
    for r in rows:
        if r["case"] == "import servopt":
            print(f"import servopt: {r['total_ms']:.1f} ms wall, {r['cpu_ms']:.1f} ms CPU (median of {r['runs']}; "
                  f"whole interpreter {r['wall_ms']:.1f} ms; load average {r['load_avg_1min']} on {r['cpus']} CPUs)")
        else:
            print(f"{r['backend']:6s} {r['approach']:14s} model {r['model_ms']:7.2f}  backend-build "
                  f"{r['backend_build_ms']:6.2f}  solve {r['solve_ms']:7.2f}  total {r['total_ms']:7.2f} ms  "
                  f"x{r['ratio_total']:.2f} total, x{r['ratio_build']:.2f} build")
    print(f"wrote {args.out / 'overhead.csv'} and {args.out / 'overhead.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
