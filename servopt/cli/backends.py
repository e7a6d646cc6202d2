"""``servopt backends``: which solvers are installed and usable."""

from __future__ import annotations

import argparse
import json

DESCRIPTION = """List every solver backend servopt knows: its name, whether its package is installed, whether it
is usable, its version and what models it can take.

"Usable" is proven by solving a one-variable model on each installed backend (this imports the solvers and, for
Gurobi, takes its licence; a licence problem shows up here). With --no-check the listing only probes package
metadata: it imports no solver and takes no licence."""

EPILOG = """examples:
  servopt backends
  servopt backends --json
  servopt backends --no-check"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--no-check", dest="check", action="store_false",
                       help="do not solve the test model; report installation only (imports no solver)")
    group.add_argument("--check", dest="check", action="store_true",
                       help="solve a one-variable model on each installed backend (the default)")
    parser.set_defaults(check=True)


def rows(check: bool) -> list[dict[str, object]]:
    """One dict per backend: name, installed, usable (bool or None when not checked), detail, version, ..."""
    from servopt.backends import describe

    out = describe()
    for row in out:
        if not row["installed"]:
            row["usable"] = False
            row["detail"] = f"not installed: pip install {row['package']}"
        elif check:
            from servopt.backends.check import smoke_test

            verdict = smoke_test(str(row["name"]))
            row["usable"] = verdict == "yes"
            row["detail"] = "solved a test model" if verdict == "yes" else verdict.removeprefix("no: ")
        else:
            row["usable"] = None
            row["detail"] = "installed (not checked: --no-check)"
    return out


def run(args: argparse.Namespace) -> int:
    table_rows = rows(args.check)
    if args.json:
        print(json.dumps(table_rows, indent=2))
        return 0
    header = ("backend", "installed", "usable", "version", "capabilities", "detail")

    def usable(value: object) -> str:
        return {True: "yes", False: "no", None: "?"}[value]  # type: ignore[index]

    table = [header] + [
        (str(r["name"]), "yes" if r["installed"] else "no", usable(r["usable"]), str(r["version"] or "-"),
         str(r["capabilities"]), str(r["detail"]))
        for r in table_rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
