"""Helpers shared by the benchmark scripts.

Each benchmark writes one CSV and one PNG under ``benchmarks/results/`` atomically (temp file + ``os.replace``),
and times with medians of repeated, interleaved runs. A ``--quick`` run (a smoke test) writes to a new temporary
folder instead, unless its output folder is given (:func:`output_dir`), so it never replaces the committed results.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmark this checkout's servopt, whichever one is installed
    sys.path.insert(1, str(ROOT))


def output_dir(given: Path | str | None, *, quick: bool, name: str, flag: str = "--out") -> Path:
    """The folder a benchmark writes its results to.

    ``given`` (the script's ``--out`` or ``--out-dir``, ``None`` when not given) is used as it is, also when it is
    ``benchmarks/results``; else a ``--quick`` run gets a new temporary folder, named on stderr, so that a smoke
    run never replaces the committed results; else :data:`RESULTS`.

    Examples
    --------
    >>> output_dir("/tmp/x", quick=True, name="demo")
    PosixPath('/tmp/x')
    >>> output_dir(None, quick=False, name="demo") == RESULTS
    True
    """
    if given is not None:
        return Path(given)
    if not quick:
        return RESULTS
    folder = Path(tempfile.mkdtemp(prefix=f"servopt-bench-{name}-quick-"))
    print(f"{name} --quick: writing to {folder} (not benchmarks/results; give {flag} DIR to choose)",
          file=sys.stderr, flush=True)
    return folder


def image_dir(given: Path | str | None, *, quick: bool) -> Path | None:
    """The folder for the docs' copy of a benchmark's PNG: ``given`` as it is; none for a ``--quick`` run (its
    PNG stays in its output folder); else ``docs/img``.

    Examples
    --------
    >>> image_dir(None, quick=True) is None
    True
    >>> image_dir(None, quick=False) == ROOT / "docs" / "img"
    True
    """
    if given is not None:
        return Path(given)
    return None if quick else ROOT / "docs" / "img"


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else math.nan


#: a method slower than this per run is run once at that size: one run is then a fair measurement
SLOW_S = 2.0


def run_seconds(sample: dict[str, Any]) -> float:
    """Build + solve seconds of one timed run."""
    return sample.get("build_s", 0.0) + sample.get("solve_s", 0.0)


def interleaved_runs(methods: Sequence[Any], runs: int, run: Any, *,
                     repeat_without_plan: Sequence[Any] = ()) -> dict[Any, list[dict[str, Any]]]:
    """Up to ``runs`` samples of ``run(method)`` per method, interleaved round by round (machine load hits every
    method alike).

    A method is not run again once a run ended without an optimal plan (a limit or an error: repeating it says
    nothing new), unless it is in ``repeat_without_plan`` (heuristics, never "optimal"), nor once its first run
    took over :data:`SLOW_S`.
    """
    samples: dict[Any, list[dict[str, Any]]] = {m: [] for m in methods}
    for _ in range(runs):
        for method, got in samples.items():
            if got and (got[-1].get("status") != "optimal" and method not in repeat_without_plan
                        or run_seconds(got[0]) > SLOW_S):
                continue
            got.append(run(method))
    return samples


def write_csv(rows: list[dict[str, Any]], fields: Sequence[str], path: Path) -> None:
    """Write ``rows`` (missing keys blank, floats with 6 significant digits) to ``path`` atomically."""
    from servopt.atomic import atomic_write

    with atomic_write(path, "w", make_parents=True, suffix=".csv.tmp") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k, "")) for k in fields})


def timed_milp(problem: Any, backend: str, time_limit: float) -> dict[str, Any]:
    """Build ``problem``'s MILP, solve it on ``backend`` and decode the plan, timing building and solving apart.

    ``build_s`` counts the formulation, the arrays, the backend's native model and decoding; ``solve_s`` the
    solver. CP-SAT gets the power-of-ten ``scale=`` that makes the data integral. A model the backend refuses
    (Gurobi's licence, a capability) gives ``status`` ``license`` or ``skipped`` with a short note.
    """
    import time

    from servopt.exceptions import ServoptError
    from servopt.formulations.ties import integral_scale
    from servopt.result import SolveParams
    from servopt.solve import solve

    t0 = time.perf_counter()
    model, decode = problem.build()
    t1 = time.perf_counter()
    scale = integral_scale(model) if backend == "cpsat" else None
    try:
        result = solve(model, backend, params=SolveParams(time_limit_s=time_limit, scale=scale))
    except ServoptError as exc:
        return {"status": "license" if "licence" in str(exc) else "skipped", "note": str(exc).split(";")[0][:100]}
    t2 = time.perf_counter()
    plan = decode(result) if result.status.has_solution else None
    return {"build_s": (t1 - t0) + result.build_seconds + (time.perf_counter() - t2),
            "solve_s": result.solve_seconds, "status": result.status.value, "vars": model.num_vars,
            "objective": plan.objective if plan is not None else math.nan}


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure to ``path`` atomically."""
    import matplotlib.pyplot as plt

    from servopt.atomic import atomic_write

    try:
        with atomic_write(path, make_parents=True, suffix=".png") as fh:
            fig.savefig(fh, dpi=110, format="png")
    finally:
        plt.close(fig)


_PYCACHE = Path(tempfile.gettempdir()) / "servopt-bench-pycache"


def cli_solve_seconds(problem_file: Path, backend: str | None = None, timeout: float = 600.0) -> dict[str, Any]:
    """Run ``servopt solve FILE --json`` in a fresh interpreter; its JSON object (``solve_seconds`` included).

    Bytecode is cached as in a normal installation (under a temporary ``PYTHONPYCACHEPREFIX``, so the checkout
    stays clean even where ``PYTHONDONTWRITEBYTECODE`` is set); run once before timing so the cache is warm.
    """
    cmd = [sys.executable, "-m", "servopt", "solve", str(problem_file), "--json"]
    if backend is not None:
        cmd += ["--backend", backend]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(_PYCACHE)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    if out.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
