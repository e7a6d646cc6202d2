"""``servopt import``: other tools' measurements restated as a servopt profile."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from servopt.exceptions import ValidationError

DESCRIPTION = """Convert measurements into a servopt profile (CSV or Parquet in servopt's schema).

KIND is one of:
  perf-analyzer   perf_analyzer -f CSV(s) (times in µs, one row per concurrency); needs --model, --hardware, and
                  each file's client batch size -b: --batch-size 1,8 (one per file, same order; one value applies
                  to all) or in the file names (r50_b8.csv, r50-b8.csv, r50_batch8.csv); all files, one profile
  model-analyzer  Model Analyzer metrics-model-inference.csv, optionally with metrics-model-gpu.csv; needs
                  --hardware (--model renames the report's model)
  infadapter      InfAdapter's capacity_result CSV at one SLA (--sla-ms, default 750); --model, --source
  ipa             one of IPA's CPU profiling CSVs (seconds); --hardware (default cpu), --model, --source
  profile         servopt profiles (CSV/Parquet): validate, concatenate, convert, as they are (no options)

An option a KIND does not read is refused (e.g. --model with profile, --sla-ms with perf-analyzer), not ignored.
Every error names the file, the row and the column; no row is dropped. An existing OUT is refused unless --force."""

EPILOG = """examples:
  servopt import perf-analyzer results.csv --model resnet50 --hardware A100-80GB --batch-size 8 -o r50.csv
  servopt import perf-analyzer r50_b1.csv r50_b8.csv --model resnet50 --hardware T4 -o r50.csv   # -b from names
  servopt import perf-analyzer one.csv eight.csv --batch-size 1,8 --model resnet50 --hardware T4 -o r50.csv
  servopt import model-analyzer metrics-model-inference.csv metrics-model-gpu.csv --hardware T4 -o ma.parquet
  servopt import infadapter data/infadapter/capacity_result_Feb_21.csv --sla-ms 750 -o cap.csv"""

KINDS = ("perf-analyzer", "model-analyzer", "infadapter", "ipa", "profile")

#: the options each KIND reads (attribute names); any other one given is refused, not ignored
_APPLIES: dict[str, tuple[str, ...]] = {
    "perf-analyzer": ("model", "variant", "hardware", "batch_size", "input_size", "cores", "source"),
    "model-analyzer": ("model", "variant", "hardware", "input_size", "cores", "source"),
    "infadapter": ("model", "sla_ms", "source"),
    "ipa": ("model", "hardware", "source"),
    "profile": (),
}
_FLAGS = {"model": "--model", "variant": "--variant", "hardware": "--hardware", "batch_size": "--batch-size",
          "input_size": "--input-size", "cores": "--cores", "sla_ms": "--sla-ms", "source": "--source"}
#: why a KIND takes none of them, where that needs saying
_WHY_NOT = {"profile": "servopt profiles already hold every column; a profile is validated, concatenated and "
                       "converted as it is"}
_ALIASES = {"perf_analyzer": "perf-analyzer", "model_analyzer": "model-analyzer"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", metavar="KIND", help="one of " + ", ".join(KINDS))
    parser.add_argument("files", metavar="FILE", nargs="+", help="input file(s)")
    parser.add_argument("-o", "--output", metavar="OUT", help="profile to write (.csv or .parquet); default: CSV on "
                        "stdout")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")
    parser.add_argument("--model", help="model family name (required for perf-analyzer; model-analyzer: renames "
                        "the report's model; infadapter, ipa: replaces the file's)")
    parser.add_argument("--variant", help="variant name (default: the model); perf-analyzer, model-analyzer")
    parser.add_argument("--hardware", help="device or machine type (required for perf-analyzer and model-analyzer; "
                        "ipa: default cpu)")
    parser.add_argument("--batch-size", default=None, metavar="B[,B...]",
                        help="perf-analyzer: the client batch size (-b), one per FILE in order (comma-separated) or "
                        "one for all; default: from each file name (*_b8.csv, *-b8.csv, *batch8*)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="input side in pixels; perf-analyzer, model-analyzer")
    parser.add_argument("--cores", type=float, default=None,
                        help="CPU cores of one replica; perf-analyzer, model-analyzer")
    parser.add_argument("--sla-ms", type=float, default=None,
                        help="infadapter only: which SLA's capacities (ms; default 750)")
    parser.add_argument("--source", help="text for the profile's source column (not for KIND profile)")


def _check_applies(args: argparse.Namespace, importer: str) -> None:
    """Refuse an option that KIND ``importer`` does not read (it would be ignored: ``import profile --model x``
    renamed nothing), naming the KINDs that do read it."""
    for name, flag in _FLAGS.items():
        if getattr(args, name) is None or name in _APPLIES[importer]:
            continue
        takers = [k for k, names in _APPLIES.items() if name in names]
        why = f" ({_WHY_NOT[importer]})" if importer in _WHY_NOT else ""
        raise ValidationError(f"servopt import {importer}: {flag} does not apply{why}; it is for "
                              f"{', '.join(takers)}")


def _need(args: argparse.Namespace, *names: str) -> None:
    missing = [n for n in names if getattr(args, n) is None]
    if missing:
        raise ValidationError(f"servopt import {args.kind}: give --{missing[0].replace('_', '-')}")


def _batch_sizes(text: str, files: int) -> list[int]:
    """``--batch-size 1,8,32`` as integers: one per file, or one for every file."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            raise ValidationError(f"--batch-size: expected an integer >= 1 (or one per file, comma-separated: 1,8), "
                                  f"got {part or text!r}")
        values.append(value)
    if len(values) == 1:
        return values * files
    if len(values) != files:
        raise ValidationError(f"--batch-size: {len(values)} batch sizes ({text}) for {files} file(s); give one per "
                              "file, in the same order, or one for all")
    return values


def run(args: argparse.Namespace) -> int:
    from servopt import profiles

    kind = _ALIASES.get(args.kind, args.kind)
    if kind not in KINDS:
        raise ValidationError(f"unknown import kind {args.kind!r}; expected one of {', '.join(KINDS)}")
    _check_applies(args, kind)
    if kind not in ("model-analyzer", "profile", "perf-analyzer") and len(args.files) != 1:
        raise ValidationError(f"servopt import {kind}: give one file, got {len(args.files)}")
    batch_sizes = _batch_sizes(args.batch_size, len(args.files)) if args.batch_size is not None else None
    if args.cores is not None and not (math.isfinite(args.cores) and args.cores > 0):
        raise ValidationError(f"--cores: expected a number of CPU cores > 0, got {args.cores!r}")
    if args.input_size is not None and args.input_size < 1:
        raise ValidationError(f"--input-size: expected an integer >= 1 (pixels), got {args.input_size}")
    if args.output:  # before reading anything: a refused output leaves no trace
        from servopt.cli._output import check_output
        from servopt.profiles import CSV_SUFFIXES, PARQUET_SUFFIXES

        check_output(args.output, "-o", force=args.force)
        if Path(args.output).suffix.lower() not in CSV_SUFFIXES + PARQUET_SUFFIXES:
            raise ValidationError(f"-o {args.output}: unknown profile format; accepted: "
                                  f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}")
    elif args.force:
        raise ValidationError("--force only applies with -o OUT (the profile to write)")
    meta = {"variant": args.variant, "input_size": args.input_size, "cores": args.cores, "source": args.source}
    if kind == "perf-analyzer":
        _need(args, "model", "hardware")
        table = profiles.read_perf_analyzer(args.files, model=args.model, hardware=args.hardware,
                                            batch_size=batch_sizes, **meta)
    elif kind == "model-analyzer":
        _need(args, "hardware")
        table = profiles.read_model_analyzer(args.files, hardware=args.hardware, model=args.model, **meta)
    elif kind == "infadapter":
        sla_ms = 750.0 if args.sla_ms is None else args.sla_ms
        table = profiles.read_infadapter_capacity(args.files[0], sla_ms, model=args.model or "resnet",
                                                  source=args.source)
    elif kind == "ipa":
        table = profiles.read_ipa_profile(args.files[0], hardware=args.hardware or "cpu", model=args.model,
                                          source=args.source)
    else:
        table = profiles.load_profile(args.files)
    frame = table.frame
    if args.output:
        try:  # missing folders are created, as by every servopt writer (servopt/cli/_output.py)
            Path(args.output).absolute().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValidationError(f"-o {args.output}: cannot create its folder ({exc.strerror or exc})") from None
        profiles.write_profile(frame, args.output)
        where = args.output
    else:
        sys.stdout.write(frame.to_csv(index=False, lineterminator="\n"))
        where = "stdout"
    groups = frame.groupby(["variant", "hardware"], dropna=False).ngroups
    print(f"servopt import: {len(frame)} rows ({groups} variant/hardware pairs) from "
          f"{', '.join(args.files)} -> {where}", file=sys.stderr)
    return 0
