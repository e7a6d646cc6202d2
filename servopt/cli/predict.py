"""``servopt predict``: every target of fitted performance models for the rows of a query file."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError

DESCRIPTION = """Predict latency (and warm-up, memory, capacity where fitted) for each row of QUERY.csv with models
saved by `servopt fit -o MODELS.joblib`. The query has the profile's feature columns (batch_size, model, variant,
hardware, input_size, ... as `servopt fit` lists them); other columns are ignored; `variant` defaults to `model`
as in profiles. Batch sizes, cores and input sizes must be > 0. A row whose names (model, variant, hardware,
labels) or configuration the models were not fitted on is marked extrapolated (a column, and "extrapolated": true
in --json) and a warning on stderr says what predicted it: the family's profiled sizes at the same work (an input
size not profiled), the datasheet scaling of the same model's profiled GPUs (a GPU of servopt's table not profiled)
or the fallback regressor (anything else). Only load models files you trust: joblib files can run code."""

EPILOG = """example:
  servopt fit profiles/nvidia_efficientnet_pytorch.csv -o models.joblib
  servopt predict models.joblib query.csv --json
  # the largest batch under 8 GiB per row, with the margin held back (profile measured with --find-max-batch):
  servopt fit profiles/measured_H200_resnet50_fp16.csv -o r50.joblib
  servopt predict r50.joblib query.csv --memory-limit-mb 8192"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", metavar="MODELS.joblib", help="models saved by servopt fit -o")
    parser.add_argument("query", metavar="QUERY.csv", help="rows to predict (.csv or .parquet)")
    parser.add_argument("--json", action="store_true", help='print {"predictions": [{...}, ...]} in row order')
    parser.add_argument("--graph", action="append", metavar="MODEL=FILE.onnx",
                        help="MODEL=FILE.onnx (repeatable): the ONNX graph of the query's model MODEL; its rows "
                        "that lack gflops get the FLOPs of one sample at their input size (without it, models "
                        "fitted on gflops take them from a polynomial in the input size fitted on the profile)")
    parser.add_argument("--intervals", action="store_true", help="add <column>_lo / <column>_hi (the prediction "
                        "interval saved by fit; beyond the profiled batch sizes it widens with the distance, and at an "
                        "unprofiled input size it is that of fit's held-out sizes) and, per row, "
                        "whether batch size, input size and hardware were profiled, interpolated or extrapolated "
                        "(coverage_<feature>) and how many octaves the batch size lies beyond the profiled ones "
                        "(coverage_batch_octaves, 0 inside)")
    parser.add_argument("--memory-limit-mb", type=float, metavar="MIB", help="also the largest batch predicted to "
                        "fit in MIB per row (its batch_size ignored): max_batch, and the share of the limit held "
                        "back for it, max_batch_oom_margin, calibrated by fit on the profile's out-of-memory "
                        "boundaries; max_batch_basis says from what: the configuration's own boundary, a profiled "
                        "size, an unprofiled size (the family line with each boundary's size left out), beyond the "
                        "profiled sizes (lowered by the shortfall per octave of the edge sizes left out), other "
                        "families' boundaries (none of its own) or uncalibrated (no boundary: nothing held back, "
                        "the batch may not fit); and planned_memory_mb, the memory a plan under MIB counts "
                        "for the row at its batch_size (the prediction over the usable fraction: at most MIB "
                        "exactly where that batch fits; a fleet's memory_mb: fit packs instances by it); --json "
                        "adds max_batch_usable_fraction")


def run(args: argparse.Namespace) -> int:
    from servopt.performance.evaluate import PerformanceModels
    from servopt.profiles import read_raw

    from servopt.cli._predict_checks import check_query, extrapolated_rows, served_by

    from servopt.cli._graphs import add_graphs, parse_graphs

    graphs = parse_graphs(getattr(args, "graph", None))
    models = PerformanceModels.load(args.models)
    raw, where = read_raw(Path(args.query))
    raw = check_query(models, raw, str(args.query), where)
    if graphs:
        if "batch_size" not in raw.columns:
            raise ValidationError(f"{args.query}: --graph needs a batch_size column in the query")
        typed = raw.assign(**{c: pd.to_numeric(raw[c], errors="coerce") for c in ("batch_size", "input_size")
                              if c in raw.columns})
        raw = add_graphs(typed, graphs, str(args.query))
    predictions = models.predict(raw, source=str(args.query), where=where, intervals=args.intervals)
    if args.intervals:
        _warn_unknown_intervals(models)
    limit = getattr(args, "memory_limit_mb", None)
    if limit is not None:
        from servopt.cli._options import check_memory_limit

        check_memory_limit(limit)
        largest = models.largest_batch(raw, limit, source=str(args.query), where=where)
        _warn_uncalibrated_limit(models, limit)
        _warn_ceiling(models, raw, largest["max_batch"].to_numpy(), limit, str(args.query), where)
        nothing = np.flatnonzero(largest["max_batch"].to_numpy() < 1)
        if len(nothing):  # a plan under this limit has no batch size for these rows
            print(f"servopt predict: warning: --memory-limit-mb {limit:g}: not even batch 1 is predicted to fit in "
                  f"{len(nothing)} row(s) (max_batch 0); first: {where[nothing[0]]}", file=sys.stderr)
        if "batch_size" in raw.columns:  # the memory a plan under the limit counts for the row at its batch
            planned = models.planned_memory(raw, limit, source=str(args.query), where=where)["planned_memory_mb"]
            largest["planned_memory_mb"] = planned.where(np.isfinite(planned))
    else:
        largest = pd.DataFrame(index=range(len(raw)))
    flagged = extrapolated_rows(models, raw, str(args.query), where)
    records = [{k: (None if math.isnan(v) else float(v)) for k, v in row.items()}
               for row in predictions.to_dict(orient="records")]
    for i, record in enumerate(records):
        record["extrapolated"] = i in flagged
        for col in largest.columns:
            value = largest[col].iloc[i]
            record[col] = value if isinstance(value, str) else (int(value) if col == "max_batch" else
                                                                  None if math.isnan(value) else float(value))
    if args.intervals:
        where_ = models.coverage(raw, source=str(args.query), where=where, octaves=True)
        for col in where_.columns:
            for i, record in enumerate(records):
                value = where_[col].iloc[i]
                record[f"coverage_{col}"] = round(float(value), 6) if col == "batch_octaves" else value
    if flagged:
        served = served_by(models, raw, str(args.query), where) if "latency" in models.targets else None
        _warn_extrapolated(flagged, served, where)
    if args.json:
        print(json.dumps({"predictions": records}, indent=2))
        return 0
    features = sorted({f for t in models.targets.values() for f in t.features},
                      key=lambda f: (f != "batch_size", f))
    shown = [f for f in features if f in raw.columns and not f.startswith("hw.")][:6]
    extra = [k for k in records[0] if k.startswith("coverage_")] if records else []
    extra += [c for c in ("max_batch", "max_batch_oom_margin", "max_batch_basis", "planned_memory_mb")
              if c in largest.columns]
    header = shown + list(predictions.columns) + ["extrapolated"] + extra
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v)  # noqa: E731
    number = lambda v: "nan" if v is None else f"{v:.4g}"  # noqa: E731  (an unknown interval)
    table = [header] + [[str(raw[c].iloc[i]) for c in shown] + [number(records[i][c]) for c in predictions.columns]
                        + ["yes" if records[i]["extrapolated"] else "no"] + [cell(records[i][k]) for k in extra]
                        for i in range(len(raw))]
    widths = [max(len(r[j]) for r in table) for j in range(len(header))]
    for row in table:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
    return 0


def _warn_ceiling(models: Any, raw: pd.DataFrame, max_batch: np.ndarray, limit: float, source: str,
                  where: list[str]) -> None:
    """One stderr line per kind of row whose largest batch is the memory model's cap: the cap reached below the
    limit (the memory grows with the batch), or a memory that does not grow (no limit binds)
    (:func:`~servopt.performance.oom.ceiling_notes`)."""
    from servopt.performance.oom import ceiling_notes

    fitted = models.targets["memory"]
    capped = np.flatnonzero(max_batch >= fitted.model.max_batch_size)
    if not len(capped):
        return
    X = fitted.frame(raw.iloc[capped].reset_index(drop=True), source, [where[i] for i in capped])
    notes = ceiling_notes(fitted.model, X, max_batch[capped], limit)
    for grows in (True, False):
        rows = [i for i, note in zip(capped, notes) if note and note.startswith("batch ") == grows]
        if rows:
            print(f"servopt predict: warning: --memory-limit-mb {limit:g}: {len(rows)} row(s) get max_batch "
                  f"{fitted.model.max_batch_size}; first: {where[rows[0]]}: {notes[list(capped).index(rows[0])]}",
                  file=sys.stderr)


def _warn_unknown_intervals(models: Any) -> None:
    """One stderr line per target whose interval rests on no held-out residual: its ``_lo`` / ``_hi`` are NaN
    (null in --json), not a zero-width interval (:data:`~servopt.performance.uncertainty.NO_RESIDUALS`)."""
    from servopt.performance.uncertainty import NO_RESIDUALS, known

    for name, fitted in models.targets.items():
        if fitted.interval is not None and not known(fitted.interval["interior"]):
            print(f"servopt predict: warning: --intervals: the {name} model's interval is unknown, so "
                  f"{fitted.output}_lo and {fitted.output}_hi are NaN: {NO_RESIDUALS}", file=sys.stderr)


def _warn_uncalibrated_limit(models: Any, limit: float) -> None:
    """One stderr line when the memory model was calibrated on out-of-memory boundaries, none of them under
    ``limit`` (:func:`~servopt.performance.oom.another_limit`)."""
    from servopt.performance.oom import another_limit, boundary_limits

    text = another_limit(boundary_limits(models.targets["memory"].model), limit)
    if text is not None:
        print(f"servopt predict: warning: --memory-limit-mb {limit:g}: {text}", file=sys.stderr)


def _warn_extrapolated(flagged: dict[int, str], served: dict[int, str] | None, where: list[str]) -> None:
    """One stderr line: how many rows lie outside the fitted profiles, what predicted their latency (``served``;
    None: the models have no latency target), the first reason."""
    from servopt.performance.work_latency import ROUTES

    first = min(flagged)
    if served is None:
        print(f"servopt predict: warning: {len(flagged)} row(s) outside the fitted profiles (extrapolated); first: "
              f"{where[first]}: {flagged[first]}", file=sys.stderr)
        return
    counts: dict[str, int] = {}
    for i in flagged:
        route = served.get(i, "configuration")
        counts[route] = counts.get(route, 0) + 1
    order = sorted(counts, key=list(ROUTES).index)
    how = "; ".join(f"{counts[r]} by {ROUTES[r]}" for r in order)
    print(f"servopt predict: warning: {len(flagged)} row(s) outside the fitted profiles (extrapolated); latency "
          f"of {how}; first: {where[first]}: {flagged[first]}", file=sys.stderr)
