"""Atomic file writes: a temporary file beside the target, moved into place only when complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from servopt.exceptions import ValidationError

__all__ = ["atomic_write", "default_mode"]


def default_mode(path: str | Path) -> None:
    """Give a temporary file (created 0600 by :func:`tempfile.mkstemp`) the mode a new file normally gets."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", *, make_parents: bool = False,
                 suffix: str = ".tmp") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it replaces ``path``, on any error it is removed.

    A reader never sees a half-written file and a failure leaves the previous file (or none) in place.
    ``OSError`` becomes a :class:`ValidationError` naming the path. Text modes use ``newline=""`` (csv-ready).

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_write(target, "w") as fh:
    ...     _ = fh.write("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if make_parents:
        directory.mkdir(parents=True, exist_ok=True)
    elif not directory.is_dir():
        raise ValidationError(f"{path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as handle:
            yield handle
        default_mode(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise ValidationError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
