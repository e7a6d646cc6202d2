"""Latency at an unprofiled input size: the work of a batch from the graph's FLOPs against pixels x batch.

    python benchmarks/work_graph.py            # profiles two graphs on this CPU (a few minutes), writes the CSVs
    python benchmarks/work_graph.py --quick    # tiny grid, one round, into a new temporary folder (a test)

Method
------
- graphs (built here, :mod:`servopt.measure.onnx_models`): ``vit_like`` (8 x 8 patch embedding, 2 blocks of
  single-head self-attention at width 64, MLP x 2: attention makes its FLOPs grow faster than the pixels) and
  ``resnet_like(width=16, blocks=(1, 1, 1, 1))`` (a small stride-32 ResNet: FLOPs follow the pixels);
- measurement: :func:`servopt.measure.profiler.profile_model` (ONNX Runtime, CPU, 1 thread) at input sizes
  64, 96, 128 (fitted) and 160, 176 (held out), batch sizes 1, 2, 4, 8, 16; ``--rounds`` full passes over the grid
  (models and rounds interleaved), each point's latency the median over the rounds (the machine is shared: one
  pass alone is noisy). The profiler records ``gflops`` per row (:mod:`servopt.measure.work_columns`);
- models (:class:`servopt.performance.WorkLatencyModel`, fitted on the rows of the fitted sizes, both models on
  the same rows): *pixels*: without the ``gflops`` column (work = batch x size^2, what every profile got before);
  *gflops (polynomial)*: with it, the held-out queries without it (the FLOPs at 160/176 px come from the
  polynomial in input size fitted on 64/96/128, :mod:`servopt.performance.work_poly`); *gflops (graph)*: the
  held-out queries with the graph's FLOPs (``servopt predict --graph``);
- error: absolute percentage error of each held-out row's latency, MAPE per model and size and overall.

Writes ``work_graph_points.csv`` (every measured point: median latency over the rounds, the fastest and slowest
round), ``work_graph.csv`` (every held-out row: measured, the three predictions) and ``work_graph_summary.csv``
(MAPE per graph, held-out size and model, and overall) under ``--out-dir`` (default ``benchmarks/results/``; with
``--quick`` a new temporary folder, named on stderr).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import output_dir  # noqa: E402

FIT_SIZES, HELD_OUT, BATCHES = (64, 96, 128), (160, 176), (1, 2, 4, 8, 16)
QUICK = dict(fit=(32, 48, 64), held=(80,), batches=(1, 2, 4), rounds=1, budget=0.02, repeats=3)
FULL = dict(fit=FIT_SIZES, held=HELD_OUT, batches=BATCHES, rounds=3, budget=0.4, repeats=30)


def graphs() -> dict[str, Any]:
    """The two graphs measured: name -> ONNX proto."""
    from servopt.measure.onnx_models import resnet_like, vit_like

    return {"vit_like": vit_like(), "resnet_like": resnet_like(width=16, blocks=(1, 1, 1, 1), num_classes=10)}


def measure(settings: dict[str, Any], folder: Path, progress: bool = True) -> Any:
    """Every grid point of both graphs, ``rounds`` times; the median latency per point."""
    import pandas as pd

    from servopt.measure.onnx_models import save_model
    from servopt.measure.profiler import profile_model

    paths = {name: save_model(proto, folder / f"{name}.onnx") for name, proto in graphs().items()}
    sizes = [*settings["fit"], *settings["held"]]
    frames = []
    for r in range(settings["rounds"]):
        for name, path in paths.items():
            if progress:
                print(f"  round {r + 1}/{settings['rounds']}: {name}", file=sys.stderr)
            run = profile_model(path, settings["batches"], sizes, cores=[1], repeats=settings["repeats"],
                                min_repeats=3, time_budget_s=settings["budget"], hardware="cpu", seed=r)
            frames.append(pd.DataFrame(run.rows).assign(round=r))
    rows = pd.concat(frames, ignore_index=True)
    keys = ["model", "variant", "hardware", "input_size", "batch_size"]
    return rows.groupby(keys, as_index=False).agg(latency_ms=("latency_ms", "median"), gflops=("gflops", "first"),
                                                  rounds=("latency_ms", "size"), round_min_ms=("latency_ms", "min"),
                                                  round_max_ms=("latency_ms", "max"))


def evaluate(points: Any, fit_sizes: tuple[int, ...]) -> Any:
    """Held-out predictions of the three models (see the module docstring) for every row not in ``fit_sizes``."""
    from servopt.performance import WorkLatencyModel

    train = points[points.input_size.isin(fit_sizes)].reset_index(drop=True)
    test = points[~points.input_size.isin(fit_sizes)].reset_index(drop=True)
    base = ["batch_size", "model", "variant", "hardware", "input_size"]
    pixels = WorkLatencyModel().fit(train[base], train.latency_ms)
    work = WorkLatencyModel().fit(train[[*base, "gflops"]], train.latency_ms)
    out = test[[*base, "gflops", "latency_ms"]].copy()
    out["pred_pixels"] = pixels.predict(test[base])
    out["pred_gflops_poly"] = work.predict(test[base])  # no gflops in the query: the polynomial
    out["pred_gflops_graph"] = work.predict(test[[*base, "gflops"]])
    poly = {m: work.work_polys_[k] for k in work.work_polys_ for m in [_model_of(work, k)]}
    out["gflops_poly"] = [float(poly[m](s)[0]) for m, s in zip(out.model, out.input_size)]
    for col in ("pixels", "gflops_poly", "gflops_graph"):
        out[f"ape_{col}"] = np.abs(out[f"pred_{col}"] / out.latency_ms - 1)
    return out


def _model_of(model: Any, key: tuple[float, ...]) -> str:
    from servopt.performance.work_poly import poly_key_columns

    names = model._feature_names()
    columns = poly_key_columns(model.family_index_, names)
    code = int(key[columns.index(names.index("model"))])
    return model.categories_["model"][code]


def summarise(held: Any) -> Any:
    import pandas as pd

    rows = []
    for (model, size), part in [*held.groupby(["model", "input_size"]), *[((m, "all"), p) for m, p in
                                                                         held.groupby("model")],
                                (("all", "all"), held)]:
        rows.append({"model": model, "input_size": size, "n": len(part),
                     "mape_pixels": part.ape_pixels.mean(), "mape_gflops_poly": part.ape_gflops_poly.mean(),
                     "mape_gflops_graph": part.ape_gflops_graph.mean(),
                     "worst_pixels": part.ape_pixels.max(), "worst_gflops_poly": part.ape_gflops_poly.max()})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny grid, one round (for the test)")
    parser.add_argument("--rounds", type=int, help="passes over the grid (default 3; --quick 1)")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the CSVs go (default benchmarks/results; "
                        "with --quick a new temporary folder)")
    args = parser.parse_args(argv)
    out = output_dir(args.out_dir, quick=args.quick, name="work_graph", flag="--out-dir")
    settings = dict(QUICK if args.quick else FULL)
    if args.rounds:
        settings["rounds"] = args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        points = measure(settings, Path(tmp), progress=not args.quick)
    held = evaluate(points, tuple(settings["fit"]))
    summary = summarise(held)
    out.mkdir(parents=True, exist_ok=True)
    points.to_csv(out / "work_graph_points.csv", index=False, float_format="%.6g")
    held.to_csv(out / "work_graph.csv", index=False, float_format="%.6g")
    summary.to_csv(out / "work_graph_summary.csv", index=False, float_format="%.4f")
    with np.printoptions(precision=3):
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote work_graph_points.csv, work_graph.csv and work_graph_summary.csv under {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
