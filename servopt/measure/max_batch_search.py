"""The out-of-memory boundary of one sweep (``servopt profile --find-max-batch``), shared by both runtimes.

After the grid of a sweep (one input size; with ONNX Runtime one ``cores`` x input size), the largest batch that
fits under the memory limit is searched by doubling past the grid and then bisection between the largest batch
that ran and the smallest that did not (:func:`find_oom_boundary`). Each trial is a cheap check (``fits``: a
fresh run of that batch, two passes, no timing); the largest batch found is then measured as a row when the grid
lacks it, and ``oom_batch_size`` of the sweep's rows becomes the boundary (:func:`search_boundary`).

Bisection assumes that memory grows with the batch. On CPU with ONNX Runtime's memory arena it does not quite:
the arena grows in powers of two, so a batch's peak resident memory can exceed that of a somewhat larger batch by
a third, over stretches about a quarter of the batch wide (``docs/profiler.md``, *Max batch*), and bisection may
return a batch that fits above one that does not. The ONNX Runtime profiler therefore walks upward first, in
:data:`ARENA_STEPS` steps between the largest batch that fits and the smallest that does not, and bisects inside
the first step that does not fit (``steps`` of :func:`find_oom_boundary`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ARENA_STEPS", "OutOfTime", "find_oom_boundary", "search_boundary", "set_oom_batch"]

#: the upward steps of the ONNX Runtime profiler's search (a step is then at most 1/16 of the bracket, about 6 %
#: of the batch after a power-of-two grid; the arena's stretches that do not fit are about 25 % wide)
ARENA_STEPS = 16


class OutOfTime(Exception):
    """The total budget ran out during a boundary search (its sweep keeps the grid's ``oom_batch_size``)."""


def find_oom_boundary(fits: Callable[[int], bool], largest_fit: int = 0, smallest_oom: int | None = None,
                      cap: int = 65536, steps: int | None = None) -> tuple[int, int | None, list[int]]:
    """The largest batch for which ``fits(batch)`` is true, by doubling then bisection.

    ``largest_fit`` (0: none known) and ``smallest_oom`` (None: none known) are what the grid already showed.
    Without a known OOM batch, batches double from ``largest_fit`` until one does not fit or ``cap`` is passed.
    With ``steps``, the batches between the largest that fits and the smallest that does not are first walked
    upward in at most ``steps`` equal steps, and the bisection runs inside the first step that does not fit: where
    memory is saw-toothed in the batch, this finds the first batch that does not fit whenever each stretch of
    batches that do not fit is at least a step wide (plain bisection may jump over it).

    Returns
    -------
    (max_fit, oom_batch, trials)
        ``oom_batch`` is ``max_fit + 1`` when the boundary was found, None when ``cap`` fits; ``trials`` are the
        batch sizes tried, in order.

    >>> find_oom_boundary(lambda b: b <= 37)
    (37, 38, [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37])
    >>> find_oom_boundary(lambda b: b <= 37, largest_fit=32, smallest_oom=64)[:2]
    (37, 38)
    >>> find_oom_boundary(lambda b: True, cap=8)[:2]
    (8, None)
    >>> saw = lambda b: b <= 40 and not 20 <= b <= 24  # batches 20-24 do not fit, 25-40 do
    >>> find_oom_boundary(saw, 16, 64)[:2], find_oom_boundary(saw, 16, 64, steps=16)[:2]
    ((40, 41), (19, 20))
    """
    lo, hi, trials = largest_fit, smallest_oom, []
    if hi is None:
        b = max(2 * lo, 1)
        while hi is None:
            b = min(b, cap)
            trials.append(b)
            if fits(b):
                lo = b
                if b >= cap:
                    return lo, None, trials
                b *= 2
            else:
                hi = b
    if steps is not None and hi - lo > 2:
        step = max(1, -(-(hi - lo) // steps))
        b = lo + step
        while b < hi:
            trials.append(b)
            if not fits(b):
                hi = b
                break
            lo, b = b, b + step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        trials.append(mid)
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi, trials


def _in_sweep(row: Mapping[str, Any], sweep: Mapping[str, Any]) -> bool:
    return all(row.get(key) == value for key, value in sweep.items())


def set_oom_batch(rows: list[dict[str, Any]], sweep: Mapping[str, Any], batch: int) -> None:
    """``oom_batch_size = batch`` on every row of the sweep (rows whose values match ``sweep``'s)."""
    for row in rows:
        if _in_sweep(row, sweep):
            row["oom_batch_size"] = batch


def search_boundary(run: Any, rows: list[dict[str, Any]], sweep: Mapping[str, Any], cap: int,
                    measure: Callable[[int], dict[str, Any]],
                    record: Callable[[int, dict[str, Any]], dict[str, Any]],
                    fits: Callable[[int], bool], write: Callable[[], None], steps: int | None = None) -> None:
    """Search the boundary of one sweep and record it (see the module docstring).

    ``sweep``: the columns and values that select the sweep's rows (``{"input_size": 224}``, with ONNX Runtime
    also ``cores``). ``measure(b)`` measures batch ``b`` fully (a point, as the profiler's own), ``record(b,
    point)`` adds it to ``rows`` (or to ``run.oom``; the returned entry has a ``reason`` then), ``fits(b)`` is the
    cheap check, ``write()`` rewrites the output, ``steps`` as in :func:`find_oom_boundary`. Appends ``{**sweep, "max_batch", "oom_batch", "trials"}`` to
    ``run.max_batch``.
    """
    have = [r["batch_size"] for r in rows if _in_sweep(r, sweep)]
    ooms = [r["oom_batch_size"] for r in rows if _in_sweep(r, sweep) and r.get("oom_batch_size")]
    ooms += [o["batch_size"] for o in run.oom if _in_sweep(o, sweep)]
    max_fit, oom_batch, trials = find_oom_boundary(fits, max(have, default=0), min(ooms, default=None), cap, steps)
    if max_fit > max(have, default=0):
        row = record(max_fit, measure(max_fit))
        if "reason" in row:
            # the full measurement ran out where the passes of the search did not: search its own boundary
            # between the largest measured grid batch and this one (each trial is a full measurement)
            lo, hi = max(have, default=0), max_fit
            while hi - lo > 1:
                mid = (lo + hi) // 2
                trials.append(mid)
                if "reason" in record(mid, measure(mid)):
                    hi = mid
                else:
                    lo = mid
            oom_batch, max_fit = hi, lo
    if oom_batch is not None:
        set_oom_batch(rows, sweep, oom_batch)
        write()
    run.max_batch.append({**sweep, "max_batch": max_fit, "oom_batch": oom_batch, "trials": trials})
