"""Progress on stderr for the steps of a command that can run for more than a few seconds.

One helper for every command (``servopt fit``, ``servopt solve``, ``servopt predict``): a line on stderr naming the
stage, with a bar and a count when the stage has a known number of steps (cross-validation folds) and the
seconds spent in it, redrawn in place twice a second by a background thread so that a long blocking call (reading a
1.5 M-row profile, a 10,000-GPU MILP) still shows that it is alive. The line is erased when the command ends.

It is shown only when stderr is a terminal, never with ``-q``; the environment variable ``SERVOPT_PROGRESS`` forces
it on (``1``) or off (``0``) whatever stderr is. With ``delay`` nothing is drawn until that many seconds have passed,
so fast commands print nothing at all.

>>> import io
>>> out = io.StringIO()                       # not a terminal: nothing is drawn
>>> with Progress("servopt fit", stream=out) as p:
...     p.stage("reading", None)
>>> out.getvalue()
''
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["Progress", "progress_enabled", "ENV"]

#: environment variable that forces progress on (``1``) or off (``0``)
ENV = "SERVOPT_PROGRESS"


def progress_enabled(quiet: bool = False, stream: TextIO | None = None) -> bool:
    """Whether to draw progress: never with ``quiet``; ``SERVOPT_PROGRESS`` decides if set; else stderr is a tty."""
    if quiet:
        return False
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "always"):
        return True
    if forced in ("0", "false", "no", "never"):
        return False
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed stream
        return False


class Progress:
    """The progress line of one command (a context manager; a no-op when progress is off).

    Parameters
    ----------
    desc : str
        What runs, e.g. ``"servopt fit"``; each line starts with it.
    quiet : bool
        ``-q``: draw nothing.
    stream : text stream, optional
        Where to draw (default ``sys.stderr``); progress is on only when it is a terminal (or ``SERVOPT_PROGRESS=1``).
    delay : float
        Seconds before anything is drawn.
    tick : float
        Seconds between redraws.
    """

    def __init__(self, desc: str, *, quiet: bool = False, stream: TextIO | None = None, delay: float = 0.0,
                 tick: float = 0.5) -> None:
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.enabled = progress_enabled(quiet, self.stream)
        self.delay = delay
        self.tick = tick
        self._start = time.monotonic()
        self._label = ""
        self._total: int | None = None
        self._done = 0
        self._stage_start = self._start
        self._drawn = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------------ public
    def stage(self, label: str, total: int | None = None) -> None:
        """Start a stage: ``label``, with ``total`` steps (None: unknown, shown as seconds only)."""
        if not self.enabled:
            return
        with self._lock:
            self._label, self._total, self._done = label, total, 0
            self._stage_start = time.monotonic()
            self._draw()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="servopt-progress", daemon=True)
            self._thread.start()

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps of the current stage are done."""
        if not self.enabled:
            return
        with self._lock:
            self._done += steps
            self._draw()

    def close(self) -> None:
        """Stop redrawing and erase the line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self.enabled and self._drawn:
                self._write("\r\x1b[K")
                self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------- drawing
    def line(self) -> str:
        """The text of the line as it would be drawn now."""
        elapsed = time.monotonic() - self._stage_start
        text = f"{self.desc}: {self._label}"
        if self._total:
            done = min(self._done, self._total)
            filled = int(20 * done / self._total)
            text += f" [{'#' * filled}{'.' * (20 - filled)}] {done}/{self._total}"
        return f"{text} {elapsed:.1f} s"

    def _draw(self) -> None:
        if time.monotonic() - self._start < self.delay or not self._label:
            return
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            width = 120
        self._write("\r" + self.line()[: max(20, width - 1)] + "\x1b[K")
        self._drawn = True

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr went away (a closed pipe): progress is not worth an error
            self.enabled = False

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            with self._lock:
                self._draw()
