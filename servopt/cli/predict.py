"""``servopt predict``: every target of fitted performance models for the rows of a query file."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

DESCRIPTION = """Predict latency (and warm-up, memory, capacity where fitted) for each row of QUERY.csv with models
saved by `servopt fit -o MODELS.joblib`. The query has the profile's feature columns (batch_size, model, variant,
hardware, input_size, ... as `servopt fit` lists them); other columns are ignored. Only load models files you
trust: joblib files can run code."""

EPILOG = """example:
  servopt fit profiles/nvidia_efficientnet_pytorch.csv -o models.joblib
  servopt predict models.joblib query.csv --json"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", metavar="MODELS.joblib", help="models saved by servopt fit -o")
    parser.add_argument("query", metavar="QUERY.csv", help="rows to predict (.csv or .parquet)")
    parser.add_argument("--json", action="store_true", help='print {"predictions": [{...}, ...]} in row order')


def run(args: argparse.Namespace) -> int:
    from servopt.performance.evaluate import PerformanceModels
    from servopt.profiles import read_raw

    models = PerformanceModels.load(args.models)
    raw, where = read_raw(Path(args.query))
    predictions = models.predict(raw, source=str(args.query), where=where)
    records = [{k: (None if math.isnan(v) else float(v)) for k, v in row.items()}
               for row in predictions.to_dict(orient="records")]
    if args.json:
        print(json.dumps({"predictions": records}, indent=2))
        return 0
    features = sorted({f for t in models.targets.values() for f in t.features},
                      key=lambda f: (f != "batch_size", f))
    shown = [f for f in features if f in raw.columns and not f.startswith("hw.")][:6]
    header = shown + list(predictions.columns)
    table = [header] + [[str(raw[c].iloc[i]) for c in shown] + [f"{records[i][c]:.4g}" for c in predictions.columns]
                        for i in range(len(raw))]
    widths = [max(len(r[j]) for r in table) for j in range(len(header))]
    for row in table:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
    return 0
