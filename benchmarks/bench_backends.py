"""Every backend on several model classes: the evidence behind ``servopt.solve(..., backend="auto")``.

Classes (all seeded, all within Gurobi's size-limited licence so every backend runs):

* ``lp-transport``     transportation LP, 30 sources x 40 sinks (1,200 continuous variables, 70 rows);
* ``int-small``        random bounded pure-integer program, 20 variables x 10 rows, integer data;
* ``int-knapsack``     multi-dimensional 0/1 knapsack, 40 binaries x 5 rows, values independent of weights;
* ``int-assignment``   generalised assignment, 8 agents x 25 jobs (200 binaries, 25 equalities, 8 capacities);
* ``mck-small``        multiple-choice knapsack 3 stages x 5 variants x 4 batches (60 binaries);
* ``mck-9x9x7``        multiple-choice knapsack 9 x 9 x 7 (567 binaries), the overhead benchmark's model;
* ``mck-fractional``   the same with fractional latencies and values (CP-SAT would need ``scale=``);
* ``int-small-fractional``, ``int-assignment-fractional``  the integer classes with two-decimal data;
* ``mixed-facility``   capacitated facility location, 8 sites (binary) x 30 customers (continuous flows);
* ``mixed-lotsizing``  capacitated lot sizing, 3 items x 12 periods (setup binaries, continuous production/stock).

Each (class, backend) pair is solved ``--runs`` times through ``servopt.solve`` after one warm-up solve; the
medians of build time (arrays, capability check, native model) and solve time are reported. CP-SAT declares that
it takes no continuous variables: those pairs are recorded as ``capability`` rows, not timed.

Usage::

    python benchmarks/bench_backends.py [--runs 5]

Writes ``benchmarks/results/backends.csv`` and ``backends.png`` and prints the fastest backend per class.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mck import make_mck  # noqa: E402
from _util import RESULTS, pyplot, save_figure, write_csv  # noqa: E402
BACKENDS = ("highs", "cpsat", "scip", "gurobi", "cvxpy")


def lp_transport(seed: int = 0):
    from servopt import Model

    rng = np.random.default_rng(seed)
    S, D = 30, 40
    supply = rng.integers(50, 100, S).astype(float)
    demand = rng.integers(20, 60, D).astype(float)
    demand *= 0.9 * supply.sum() / demand.sum()
    cost = rng.uniform(1, 20, (S, D))
    m = Model("lp-transport")
    for i in range(S):
        for j in range(D):
            m.add_continuous(f"f_{i}_{j}")
    for i in range(S):
        m.add_row(np.arange(i * D, (i + 1) * D), np.ones(D), ub=supply[i], name=f"supply_{i}")
    for j in range(D):
        m.add_row(np.arange(j, S * D, D), np.ones(S), lb=demand[j], name=f"demand_{j}")
    m.set_objective_arrays(np.arange(S * D), cost.ravel(), "min")
    return m


def int_small(seed: int = 0, fractional: bool = False):
    from servopt import Model

    rng = np.random.default_rng(seed)
    n, k = 20, 10
    m = Model("int-small-fractional" if fractional else "int-small")
    for j in range(n):
        m.add_integer(f"x{j}", lb=0, ub=int(rng.integers(3, 10)))
    A = rng.integers(-3, 10, (k, n)) * (rng.random((k, n)) < 0.6)
    if fractional:  # same structure, coefficients with two decimals
        A = A + np.round(rng.uniform(-0.5, 0.5, (k, n)), 2) * (A != 0)
    for i in range(k):
        m.add_row(np.arange(n), A[i], ub=int(np.abs(A[i]).sum() * 2), name=f"r{i}")
    m.set_objective_arrays(np.arange(n), rng.integers(1, 20, n), "max")
    return m


def int_knapsack(seed: int = 0):
    from servopt import Model

    rng = np.random.default_rng(seed)
    n, k = 40, 5
    W = rng.integers(10, 100, (k, n))
    m = Model("int-knapsack")
    for j in range(n):
        m.add_binary(f"x{j}")
    for i in range(k):
        m.add_row(np.arange(n), W[i], ub=int(W[i].sum() // 3), name=f"w{i}")
    m.set_objective_arrays(np.arange(n), rng.integers(10, 100, n), "max")
    return m


def int_assignment(seed: int = 0, fractional: bool = False):
    from servopt import Model

    rng = np.random.default_rng(seed)
    A, J = 8, 25
    cost = rng.integers(5, 50, (A, J))
    size = rng.integers(5, 25, (A, J))
    if fractional:  # measured-looking job sizes and costs
        cost = cost + np.round(rng.uniform(-0.5, 0.5, (A, J)), 2)
        size = size + np.round(rng.uniform(-0.5, 0.5, (A, J)), 2)
    cap = (size.mean(axis=0).sum() / A * 1.3).astype(int)
    m = Model("int-assignment-fractional" if fractional else "int-assignment")
    for a in range(A):
        for j in range(J):
            m.add_binary(f"x_{a}_{j}")
    for j in range(J):
        m.add_row(np.arange(j, A * J, J), np.ones(A), lb=1, ub=1, name=f"job_{j}")
    for a in range(A):
        m.add_row(np.arange(a * J, (a + 1) * J), size[a], ub=int(cap), name=f"cap_{a}")
    m.set_objective_arrays(np.arange(A * J), cost.ravel(), "min")
    return m


def mck(stages: int, variants: int, batches: int, name: str, fractional: bool = False):
    def build(seed: int = 0):
        from servopt import Model

        inst = make_mck(stages, variants, batches, seed=seed)
        if fractional:  # the same choices with measured-looking data: latencies and values with decimals
            rng = np.random.default_rng(seed + 1)
            inst = type(inst)(inst.value + rng.uniform(-0.5, 0.5, inst.value.shape),
                              inst.latency + rng.uniform(-0.5, 0.5, inst.latency.shape),
                              inst.cores, inst.sla, inst.budget)
        S, V, B = inst.shape
        n = S * V * B
        m = Model(name)
        for j in range(n):
            m.add_binary(f"x{j}")
        for s in range(S):
            m.add_row(np.arange(s * V * B, (s + 1) * V * B), np.ones(V * B), lb=1, ub=1, name=f"one_{s}")
        m.add_row(np.arange(n), inst.latency.ravel(), ub=inst.sla, name="sla")
        m.add_row(np.arange(n), inst.cores.ravel(), ub=inst.budget, name="budget")
        m.set_objective_arrays(np.arange(n), inst.value.ravel(), "max")
        return m

    return build


def mixed_facility(seed: int = 0):
    from servopt import Model

    rng = np.random.default_rng(seed)
    F, C = 8, 30
    fixed = rng.uniform(100, 300, F)
    capacity = rng.uniform(50, 150, F)
    demand = rng.uniform(5, 20, C)
    cost = rng.uniform(1, 10, (F, C))
    m = Model("mixed-facility")
    for f in range(F):
        m.add_binary(f"open_{f}")
    for f in range(F):
        for c in range(C):
            m.add_continuous(f"flow_{f}_{c}")
    flow = lambda f, c: F + f * C + c  # noqa: E731
    for c in range(C):
        m.add_row([flow(f, c) for f in range(F)], np.ones(F), lb=demand[c], ub=demand[c], name=f"demand_{c}")
    for f in range(F):
        m.add_row([flow(f, c) for c in range(C)] + [f], np.append(np.ones(C), -capacity[f]), ub=0, name=f"cap_{f}")
    m.set_objective_arrays(np.arange(F + F * C), np.concatenate([fixed, cost.ravel()]), "min")
    return m


def mixed_lotsizing(seed: int = 0):
    from servopt import Model, quicksum

    rng = np.random.default_rng(seed)
    items, periods = 3, 12
    demand = rng.integers(0, 40, (items, periods)).astype(float)
    setup = rng.uniform(50, 150, items)
    hold = rng.uniform(0.5, 2.0, items)
    capacity = demand.sum(axis=0).mean() * 1.4
    m = Model("mixed-lotsizing")
    x = [[m.add_continuous(f"make_{i}_{t}") for t in range(periods)] for i in range(items)]
    s = [[m.add_continuous(f"stock_{i}_{t}") for t in range(periods)] for i in range(items)]
    y = [[m.add_binary(f"setup_{i}_{t}") for t in range(periods)] for i in range(items)]
    for i in range(items):
        for t in range(periods):
            before = s[i][t - 1] if t else 0
            m.add_constraint(before + x[i][t] - s[i][t] == demand[i, t], name=f"balance_{i}_{t}")
            m.add_constraint(x[i][t] <= demand[i, t:].sum() * y[i][t], name=f"setup_{i}_{t}")
    for t in range(periods):
        m.add_constraint(quicksum(x[i][t] for i in range(items)) <= capacity, name=f"capacity_{t}")
    m.minimize(quicksum(setup[i] * y[i][t] + hold[i] * s[i][t] for i in range(items) for t in range(periods)))
    return m


CLASSES: list[tuple[str, Callable]] = [
    ("lp-transport", lp_transport),
    ("int-small", int_small),
    ("int-knapsack", int_knapsack),
    ("int-assignment", int_assignment),
    ("mck-small", mck(3, 5, 4, "mck-small")),
    ("mck-9x9x7", mck(9, 9, 7, "mck-9x9x7")),
    ("mck-fractional", mck(9, 9, 7, "mck-fractional", fractional=True)),
    ("int-small-fractional", lambda seed=0: int_small(seed, fractional=True)),
    ("int-assignment-fractional", lambda seed=0: int_assignment(seed, fractional=True)),
    ("mixed-facility", mixed_facility),
    ("mixed-lotsizing", mixed_lotsizing),
]


def measure(runs: int, backends: tuple[str, ...] = BACKENDS) -> list[dict[str, object]]:
    from servopt import CapabilityError, SolveParams, solve
    from servopt.backends import check_capabilities

    rows = []
    for cls, build in CLASSES:
        model = build()
        arrays = model.arrays()
        for backend in backends:
            row: dict[str, object] = {"class": cls, "backend": backend, "n_vars": arrays.n_vars,
                                      "n_rows": arrays.n_rows, "integer_vars": int(arrays.integrality.sum())}
            try:
                check_capabilities(backend, arrays, SolveParams())
            except CapabilityError as exc:
                rows.append({**row, "status": "capability", "note": str(exc).split(":")[1].strip()})
                continue
            solve(build(), backend)  # warm-up: imports, licence check, first-call costs
            samples = []
            result = None
            for _ in range(runs):
                m = build()
                t0 = time.perf_counter()
                result = solve(m, backend)
                wall = time.perf_counter() - t0
                samples.append((wall - result.solve_seconds, result.solve_seconds, wall))
            arr = np.array(samples) * 1000.0
            assert result is not None
            rows.append({**row, "status": result.status.value, "objective": result.objective,
                         "build_ms": float(np.median(arr[:, 0])), "solve_ms": float(np.median(arr[:, 1])),
                         "total_ms": float(np.median(arr[:, 2])), "runs": runs})
            print(f"{cls:26s} {backend:7s} {result.status.value:9s} obj {result.objective!s:>22s}  "
                  f"build {rows[-1]['build_ms']:8.2f}  solve {rows[-1]['solve_ms']:9.2f} ms", flush=True)
    return rows


def check_agreement(rows: list[dict[str, object]]) -> None:
    for cls, _ in CLASSES:
        objs = [r["objective"] for r in rows if r["class"] == cls and r["status"] == "optimal"]
        if objs and max(objs) - min(objs) > 1e-6 * max(1.0, abs(objs[0])):
            raise SystemExit(f"backends disagree on {cls}: {objs}")


def fastest(rows: list[dict[str, object]], exclude: tuple[str, ...] = ()) -> dict[str, tuple[str, float]]:
    best: dict[str, tuple[str, float]] = {}
    for r in rows:
        if r["status"] != "optimal" or r["backend"] in exclude:
            continue
        cls = str(r["class"])
        if cls not in best or float(r["total_ms"]) < best[cls][1]:
            best[cls] = (str(r["backend"]), float(r["total_ms"]))
    return best


def write_rows(path: Path, rows: list[dict[str, object]]) -> None:
    """Every key any row has becomes a column, in order of first appearance."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    write_csv(rows, fields, path)


def plot(path: Path, rows: list[dict[str, object]], backends: tuple[str, ...]) -> None:
    plt = pyplot()
    classes = [c for c, _ in CLASSES]
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / len(backends)
    for k, backend in enumerate(backends):
        x, h, hb = [], [], []
        for i, cls in enumerate(classes):
            r = next((r for r in rows if r["class"] == cls and r["backend"] == backend), None)
            if r is None or r["status"] == "capability":
                ax.text(i + (k - len(backends) / 2 + 0.5) * width, 0.12, "n/a", rotation=90, ha="center",
                        fontsize=7, color="grey")
                continue
            x.append(i + (k - len(backends) / 2 + 0.5) * width)
            h.append(float(r["total_ms"]))
            hb.append(float(r["build_ms"]))
        bars = ax.bar(x, h, width, label=backend)
        ax.bar(x, hb, width, color="black", alpha=0.25)
        del bars
    ax.set_yscale("log")
    ax.set_ylim(0.1, None)
    ax.set_xticks(range(len(classes)), classes, fontsize=8, rotation=20, ha="right")
    ax.set_ylabel("build + solve, ms (median; dark part: build)")
    ax.set_title("servopt backends by model class (lower is better)")
    ax.legend(fontsize=8, ncol=len(backends))
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed solves per (class, backend)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = measure(args.runs)
    check_agreement(rows)
    from servopt.solve import choose_backend, model_class

    for cls, build in CLASSES:
        arrays = build().arrays()
        for r in rows:
            if r["class"] == cls:
                r["model_class"] = model_class(arrays)
                r["auto_choice"] = choose_backend(arrays)
    write_rows(args.out / "backends.csv", rows)
    plot(args.out / "backends.png", rows, BACKENDS)
    print("fastest per class (all backends):")
    for cls, (backend, ms) in fastest(rows).items():
        print(f"  {cls:26s} {backend:7s} {ms:9.2f} ms")
    print("fastest per class without a licence (what `auto` may pick):")
    for cls, (backend, ms) in fastest(rows, exclude=("gurobi",)).items():
        auto = next(r["auto_choice"] for r in rows if r["class"] == cls)
        auto_ms = next((float(r["total_ms"]) for r in rows if r["class"] == cls and r["backend"] == auto), ms)
        print(f"  {cls:26s} {backend:7s} {ms:9.2f} ms   auto picks {auto:7s} {auto_ms:9.2f} ms")
    print(f"wrote {args.out / 'backends.csv'} and {args.out / 'backends.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
