"""Shared by the example builders: write generated problem files, or check that the committed ones are current."""

from __future__ import annotations

import sys
from pathlib import Path

from servopt.atomic import atomic_write


def write_or_check(files: dict[str, str], here: Path, script: str, check: bool) -> int:
    """Write each ``name -> text`` beside ``here`` atomically; with ``check``, only report stale files (exit 1)."""
    stale = []
    for name, text in files.items():
        path = here / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        with atomic_write(path, "w") as fh:
            fh.write(text)
        print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python examples/{script})", file=sys.stderr)
        return 1
    return 0
