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

The CLI (``--cli``, also part of a full run): ``servopt solve FILE --json`` on a 50-stage x 50-variant x 7-batch sum
pipeline (17,500 options, an 800 kB YAML file) against ``python -c pass``, in fresh interpreters alternating
round by round (bytecode cache warm, as in an installation): wall and CPU seconds of each (CPU from
``getrusage`` of the children, which machine load hardly moves), servopt's time beyond the interpreter's start
(the paired difference per round), and the ``parse_seconds`` / ``solve_seconds`` the CLI reports.

Usage::

    python benchmarks/bench_overhead.py [--rounds 15] [--cli] [--cli-runs 15]

Writes ``benchmarks/results/overhead.csv`` and ``overhead.png`` (not with ``--cli``), and
``benchmarks/results/cli_overhead.csv`` and ``docs/img/cli_overhead.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mck import MCK, make_mck  # noqa: E402
from _util import RESULTS, ROOT, pyplot, save_figure, write_csv  # noqa: E402


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


# ---------------------------------------------------------------------------------------------------- CLI
def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of one fresh interpreter running ``cmd``, and its stdout."""
    cpu0 = _child_cpu()
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return time.perf_counter() - t0, _child_cpu() - cpu0, out.stdout


def cli_overhead(runs: int, stages: int = 50, variants: int = 50) -> list[dict[str, object]]:
    """``servopt solve --json`` on an S x V x 7 sum pipeline against ``python -c pass``, ``runs`` rounds."""
    from bench_pipeline import ipa_instance, pipeline_yaml

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "servopt-bench-pycache")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"pipeline_{stages}x{variants}.yaml"
        path.write_text(pipeline_yaml(ipa_instance(stages, variants)))
        size_kb = path.stat().st_size / 1024
        solve = [sys.executable, "-m", "servopt", "solve", str(path), "--json"]
        bare = [sys.executable, "-c", "pass"]
        _timed(solve, env)  # warm-up: bytecode cache, page cache
        _timed(bare, env)
        got: dict[str, list[tuple[float, float]]] = {"pass": [], "solve": []}
        answers = []
        for r in range(runs):
            for name, cmd in ((("pass", bare), ("solve", solve)) if r % 2 == 0 else (("solve", solve), ("pass", bare))):
                wall, cpu, out = _timed(cmd, env)
                got[name].append((wall, cpu))
                if name == "solve":
                    answers.append(json.loads(out))
    case = f"cli pipeline {stages}x{variants}x7"
    rows: list[dict[str, object]] = []
    for name, label in (("pass", "python -c pass"), ("solve", "servopt solve --json")):
        arr = np.array(got[name]) * 1000.0
        rows.append({"case": case, "backend": "dp" if name == "solve" else "-", "approach": label,
                     "wall_ms": float(np.median(arr[:, 0])), "cpu_ms": float(np.median(arr[:, 1])),
                     "max_wall_ms": float(arr[:, 0].max()), "runs": runs})
    beyond = (np.array(got["solve"]) - np.array(got["pass"])) * 1000.0  # paired per round
    rows.append({"case": case, "backend": "dp", "approach": "beyond interpreter start",
                 "wall_ms": float(np.median(beyond[:, 0])), "cpu_ms": float(np.median(beyond[:, 1])),
                 "max_wall_ms": float(beyond[:, 0].max()), "runs": runs, "target_ms": 500.0,
                 "parse_ms": statistics.median(a["parse_seconds"] for a in answers) * 1000.0,
                 "solve_ms": statistics.median(a["solve_seconds"] for a in answers) * 1000.0,
                 "status": answers[-1]["status"], "objective": answers[-1]["objective"],
                 "file_kb": round(size_kb, 1)})
    return rows


def plot_cli(path: Path, rows: list[dict[str, object]]) -> None:
    plt = pyplot()
    bare, solve, beyond = rows[0], rows[1], rows[2]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    parts = [("interpreter start (python -c pass)", float(bare["wall_ms"]), "#999999"),
             ("parse + validate (parse_seconds)", float(beyond["parse_ms"]), "#4c72b0"),
             ("solve (solve_seconds)", float(beyond["solve_ms"]), "#55a868"),
             ("imports, output, exit", max(0.0, float(beyond["wall_ms"]) - float(beyond["parse_ms"])
                                          - float(beyond["solve_ms"])), "#dd8452")]
    left = 0.0
    for label, width, colour in parts:
        ax.barh([1], [width], left=left, color=colour, label=f"{label}: {width:.0f} ms")
        left += width
    # CPU seconds, which machine load hardly moves: the interpreter's, then servopt's beyond it
    ax.barh([0], [float(bare["cpu_ms"])], color="#999999")
    ax.barh([0], [float(beyond["cpu_ms"])], left=float(bare["cpu_ms"]), color="#8172b3",
            label=f"CPU beyond interpreter start: {float(beyond['cpu_ms']):.0f} ms")
    ax.axvline(float(bare["wall_ms"]) + 500.0, color="red", linestyle="--", linewidth=1)
    ax.text(float(bare["wall_ms"]) + 505.0, 1.45, "target: 500 ms beyond start", color="red", fontsize=8)
    ax.set_yticks([0, 1], ["CPU", "wall"])
    ax.set_xlabel("milliseconds (medians; wall beyond start split by the CLI's own times)")
    ax.set_title(f"{beyond['case']}: servopt solve --json, {beyond['wall_ms']:.0f} ms beyond interpreter start "
                 f"(CPU {beyond['cpu_ms']:.0f} ms; load {beyond.get('load_avg_1min', '?')})", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2)
    ax.set_xlim(0, max(left, float(bare["wall_ms"]) + 500.0) * 1.15)
    fig.tight_layout()
    save_figure(fig, path)


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
    parser.add_argument("--cli", action="store_true", help="only the CLI measurement")
    parser.add_argument("--cli-runs", type=int, default=15, help="fresh interpreters per command (CLI)")
    parser.add_argument("--cli-size", type=int, nargs=2, default=(50, 50), metavar=("STAGES", "VARIANTS"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    cli = cli_overhead(args.cli_runs, *args.cli_size)
    load = round((load + os.getloadavg()[0]) / 2, 2)
    for row in cli:
        row["cpus"], row["load_avg_1min"] = os.cpu_count(), load
    png = ROOT / "docs" / "img" / "cli_overhead.png" if args.out == RESULTS else args.out / "cli_overhead.png"
    write_rows(args.out / "cli_overhead.csv", cli)
    plot_cli(png, cli)
    for r in cli:
        print(f"{r['case']}: {r['approach']:24s} wall {r['wall_ms']:7.1f} ms  CPU {r['cpu_ms']:7.1f} ms  "
              f"(max wall {r['max_wall_ms']:.1f}; load average {load} on {os.cpu_count()} CPUs)")
    print(f"  parse_seconds {cli[2]['parse_ms']:.1f} ms, solve_seconds {cli[2]['solve_ms']:.1f} ms; wrote "
          f"{args.out / 'cli_overhead.csv'} and {png}")
    if args.cli:
        return 0
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
