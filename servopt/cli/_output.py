"""Shared CLI output rules: outputs are checked before any work, and every outcome can be reported as JSON.

One rule for every file or folder a command writes: an existing output is refused unless ``--force`` is given
(``profile --resume`` consents by itself), and the destination must be writable; both are checked before the
command does any work, so a refused command writes nothing. Writers then write atomically (a temporary file
beside the target, renamed when complete).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from servopt.exceptions import ValidationError

__all__ = ["check_output", "print_json_status"]


def check_output(path: str | os.PathLike[str], flag: str, *, force: bool = False, folder: bool = False) -> None:
    """Refuse an output ``path`` that exists (unless ``force``) or cannot be written, naming ``flag`` and the path.

    ``folder`` says the output is a directory (``solve --out``); otherwise it is a file. Writability is probed
    by creating and removing a temporary file in the nearest existing ancestor directory (missing parents are
    created by the writers), which also works for root, whom permission bits do not stop.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> check_output(d / "new.csv", "-o")
    >>> (d / "old.csv").write_text("x") and None
    >>> check_output(d / "old.csv", "-o")
    Traceback (most recent call last):
    ...
    servopt.exceptions.ValidationError: -o ...old.csv: the file exists; pass --force to replace it
    """
    target = Path(path)
    what = "folder" if folder else "file"
    if str(path) == "":
        raise ValidationError(f"{flag}: expected a {what} name, got ''")
    if os.path.lexists(target):
        if target.is_dir() and not folder:
            raise ValidationError(f"{flag} {path}: is a directory; give a file name")
        if folder and not target.is_dir():
            raise ValidationError(f"{flag} {path}: exists and is not a folder; give a folder name")
        if not force:
            raise ValidationError(f"{flag} {path}: the {what} exists; pass --force to replace it")
    parent = target.absolute().parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValidationError(f"{flag} {path}: cannot write there, {parent} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".servopt-probe.", dir=parent)
    except OSError as exc:
        raise ValidationError(f"{flag} {path}: cannot write in {parent} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def print_json_status(status: str, exit_code: int, message: str) -> None:
    """Print ``{"status", "exit_code", "message"}`` on stdout: the ``--json`` answer of a run without a result."""
    print(json.dumps({"status": status, "exit_code": exit_code, "message": message}))
    sys.stdout.flush()
