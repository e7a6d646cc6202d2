"""``servopt backends``: which solvers are installed and usable."""

from __future__ import annotations

import argparse
import json

DESCRIPTION = """List every solver backend servopt knows: whether its package is installed and usable, its version
and what models it can take. Probing imports no solver and takes no licence, unless --check is given, which
solves a one-variable model on each installed backend to prove it really works (a Gurobi licence problem
shows up there)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--check", action="store_true", help="solve a tiny model on each installed backend")


def run(args: argparse.Namespace) -> int:
    from servopt.backends import describe

    rows = describe()
    if args.check:
        from servopt.backends.check import smoke_test

        for row in rows:
            row["usable"] = smoke_test(row["name"]) if row["installed"] else "not installed"
    else:
        for row in rows:
            row["usable"] = "yes (installed)" if row["installed"] else "no: pip install " + row["package"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("backend", "installed", "version", "usable", "capabilities")
    table = [header] + [
        (r["name"], "yes" if r["installed"] else "no", r["version"] or "-", str(r["usable"]), r["capabilities"])
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
