"""Helpers shared by the scaling benchmarks (bench_pipeline, bench_gpus, bench_variants, bench_prediction).

Each benchmark writes one CSV and one PNG under ``benchmarks/results/`` atomically (temp file + ``os.replace``),
and times with medians of repeated, interleaved runs.
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


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else math.nan


def write_csv(rows: list[dict[str, Any]], fields: Sequence[str], path: Path) -> None:
    """Write ``rows`` (missing keys blank, floats with 6 significant digits) to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".csv.tmp")
    with os.fdopen(fd, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k, "")) for k in fields})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure to ``path`` atomically."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


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
