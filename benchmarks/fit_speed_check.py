"""The soft-L1 solver of ``servopt.performance._lsq`` against scipy, on every shipped latency profile.

    python benchmarks/fit_speed_check.py           # all profiles (a few minutes on 2 busy cores)
    python benchmarks/fit_speed_check.py --quick   # the two CPU profiles, into a new temporary folder

For each profile (``profiles/measured_*.csv`` and ``profiles/nvidia_*.csv`` one by one, and the four H200 profiles
together, as ``servopt fit`` reads them) it fits the latency target twice, side by side in the same process: with
``SERVOPT_LSQ=scipy`` (every fit by ``scipy.optimize.least_squares``, the path before the solver) and with the
solver. It reports

* ``choices_differing``: in-grid choices (``WorkLatencyModel.in_grid_choices()``) that differ, over every
  ``WorkLatencyModel.fit`` that ``fit_profile`` runs (the final fit and one per held-out batch size) and one
  direct ``WorkLatencyModel().fit`` on the whole profile;
* ``max_rel_rows``: the largest relative difference of the predictions on the profile's rows (of the direct fit
  and of ``fit_profile``'s final model); ``max_rel_beyond``: of the direct fit on the same rows at 2x and 4x
  their batch size; ``max_rel_cv``: over the held-out predictions of ``fit_profile``'s cross-validation;
* ``max_abs_inner_error``: the largest difference of the inner mean absolute log errors the choice compares
  (``InGrid.errors``, over every fit): what the solver changes (it solves the refits of the inner folds; the
  full fits are scipy's on both paths);
* the seconds of ``fit_profile(..., targets=["latency"])`` with each path.

Writes ``fit_speed_check.csv`` under ``--out`` (default ``benchmarks/results/``; with ``--quick`` a new temporary
folder, named on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, output_dir, write_csv  # noqa: E402

FIELDS = ["data", "rows", "fits", "choices_differing", "max_rel_rows", "max_rel_beyond", "max_rel_cv",
          "max_abs_inner_error", "scipy_s", "solver_s", "speedup"]


@contextlib.contextmanager
def _path(solver: str) -> Any:
    """``SERVOPT_LSQ=scipy`` for the old path, unset for the solver, for the duration."""
    before = os.environ.pop("SERVOPT_LSQ", None)
    if solver == "scipy":
        os.environ["SERVOPT_LSQ"] = "scipy"
    try:
        yield
    finally:
        os.environ.pop("SERVOPT_LSQ", None)
        if before is not None:
            os.environ["SERVOPT_LSQ"] = before


@contextlib.contextmanager
def _recording(choices: list[dict[Any, str]], errors: list[np.ndarray]) -> Any:
    """Every ``WorkLatencyModel.fit`` appends its in-grid choices to ``choices`` and its inner errors to
    ``errors``."""
    from servopt.performance import WorkLatencyModel

    fit = WorkLatencyModel.fit

    def recorded(self: Any, X: Any, y: Any) -> Any:
        out = fit(self, X, y)
        choices.append(self.in_grid_choices())
        errors.append(np.array([e for g in self.in_grid_.values() for _, e in g.errors]))
        return out

    WorkLatencyModel.fit = recorded
    try:
        yield
    finally:
        WorkLatencyModel.fit = fit


def _run(frame: Any, solver: str) -> dict[str, Any]:
    from servopt.performance import WorkLatencyModel
    from servopt.performance.evaluate import fit_profile

    choices: list[dict[Any, str]] = []
    errors: list[np.ndarray] = []
    with _path(solver), _recording(choices, errors):
        start = time.perf_counter()
        models, reports = fit_profile(frame, targets=["latency"])
        seconds = time.perf_counter() - start
        cols = ["batch_size"] + [c for c in ("model", "variant", "hardware", "input_size", "cores")
                                 if c in frame and frame[c].notna().all()]
        X = frame[cols]
        direct = WorkLatencyModel().fit(X, frame["latency_ms"].to_numpy())
    beyond = [X.assign(batch_size=X["batch_size"] * k) for k in (2, 4)]
    final = models.targets["latency"]
    cv = np.concatenate([g.predicted for g in reports["latency"].groups]) if "latency" in reports else np.empty(0)
    return {"seconds": seconds, "choices": choices, "errors": np.concatenate(errors), "cv": cv,
            "rows": np.concatenate([direct.predict(X), final.model.predict(final.train)]),
            "beyond": np.concatenate([direct.predict(b) for b in beyond])}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[ok] / b[ok] - 1.0))) if ok.any() else 0.0


def check(name: str, paths: list[Path]) -> dict[str, Any]:
    """One row of the report for the profiles ``paths`` read together."""
    from servopt.profiles import load_profile

    frame = load_profile([str(p) for p in paths]).frame
    frame = frame[frame["latency_ms"].notna()].reset_index(drop=True)
    old = _run(frame, "scipy")
    new = _run(frame, "solver")
    differing = sum(sum(a[k] != b.get(k) for k in a) for a, b in zip(old["choices"], new["choices"]))
    return {"data": name, "rows": len(frame), "fits": len(old["choices"]), "choices_differing": differing,
            "max_rel_rows": _rel(new["rows"], old["rows"]), "max_rel_beyond": _rel(new["beyond"], old["beyond"]),
            "max_rel_cv": _rel(new["cv"], old["cv"]),
            "max_abs_inner_error": float(np.max(np.abs(new["errors"] - old["errors"]), initial=0.0)),
            "scipy_s": old["seconds"], "solver_s": new["seconds"],
            "speedup": old["seconds"] / new["seconds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the two CPU profiles")
    parser.add_argument("--out", type=Path, default=None, help="folder for the CSV (default benchmarks/results; "
                        "with --quick a new temporary folder)")
    args = parser.parse_args(argv)
    out = output_dir(args.out, quick=args.quick, name="fit_speed_check")
    os.environ.setdefault("SERVOPT_PROGRESS", "0")
    prof = ROOT / "profiles"
    sets = {p.stem: [p] for p in sorted(prof.glob("measured_*.csv")) + sorted(prof.glob("nvidia_*.csv"))
            if not args.quick or "H200" not in p.stem and "like" in p.stem}
    if not args.quick:
        sets["H200 profiles (4)"] = [prof / f"measured_H200_{m}_{d}.csv" for m in ("resnet50", "mobilenet_v3_large")
                                     for d in ("fp32", "fp16")]
    rows = []
    for name, paths in sets.items():
        row = check(name, paths)
        rows.append(row)
        print(" | ".join(f"{row[f]:.3g}" if isinstance(row[f], float) else str(row[f]) for f in FIELDS), flush=True)
    write_csv(rows, FIELDS, out / "fit_speed_check.csv")
    print(f"wrote {out / 'fit_speed_check.csv'}")
    return 0 if all(r["choices_differing"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
