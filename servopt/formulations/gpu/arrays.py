"""The GPU pool as numpy arrays, built once per problem, for the exact greedy of :mod:`servopt.formulations.gpu.greedy`.

Every GPU works on its own, so all the greedy needs of a type is its best option (the batch size with the most
images within the deadline, :func:`~servopt.formulations.gpu.types.gpu_options`, decided exactly) and its count.
:func:`pool_arrays` computes these once, when the problem is constructed (``GPUProblemBase._check_common``), and
keeps them on the problem: the solve then works on a few small arrays (one entry per GPU type, sorted by
decreasing capacity), whatever the number of GPUs, so building lies outside ``solve_seconds`` (it is part of
reading the problem, like the validation of the batch tables).

>>> import servopt
>>> a100 = servopt.GPUType("A100", max_count=4, batches={64: {"latency_ms": 20.0, "warmup_ms": 1500.0}})
>>> t4 = servopt.GPUType("T4", max_count=8, batches={64: {"latency_ms": 60.0, "warmup_ms": 900.0}})
>>> arrays = pool_arrays(servopt.MinGPUs(images=50_000, deadline_s=10, gpus=[a100, t4]))
>>> arrays.capacity.tolist(), arrays.count.tolist(), [o.hardware for o in arrays.options]
([27264, 9728], [4, 8], ['A100', 'T4'])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # types.py builds the arrays with the problem: imported only for annotations
    from servopt.formulations.gpu.types import GPUOption

__all__ = ["PoolArrays", "pool_arrays", "build_pool_arrays"]

#: sums above this are done in Python integers (numpy's int64 would overflow)
_INT64_SAFE = 2**62


@dataclass(frozen=True)
class PoolArrays:
    """Each usable GPU type's best option, sorted by decreasing capacity (ties: pool order).

    Attributes
    ----------
    options : tuple of GPUOption
        The best option of each type with ``max_count >= 1`` and an option within the deadline (and SLO); ties
        between batch sizes go to the smaller batch.
    capacity : ndarray of int64
        Images one GPU of that type processes within the deadline (``options[i].images``).
    count : ndarray of int64
        GPUs of that type in the pool (``max_count``).
    cumulative : ndarray of int64 or object
        ``cumsum(capacity * count)``: images the first i + 1 types' GPUs process (Python integers when int64
        could overflow).
    """

    options: tuple[GPUOption, ...]
    capacity: np.ndarray
    count: np.ndarray
    cumulative: np.ndarray

    @property
    def total(self) -> int:
        """Images the whole pool processes within the deadline, each GPU at its best batch size."""
        return int(self.cumulative[-1]) if len(self.cumulative) else 0


def build_pool_arrays(gpus: Sequence[Any], options: Iterable[GPUOption]) -> PoolArrays:
    """The :class:`PoolArrays` of a pool from its options (``problem.options()``; see :func:`pool_arrays`)."""
    best: dict[int, GPUOption] = {}
    for o in options:
        held = best.get(o.type_index)
        if held is None or (o.images, -o.batch_size) > (held.images, -held.batch_size):
            best[o.type_index] = o
    options = tuple(sorted(best.values(), key=lambda o: (-o.images, o.type_index)))
    capacity = np.array([o.images for o in options], dtype=np.int64)
    count = np.array([gpus[o.type_index].max_count for o in options], dtype=np.int64)
    if options and int(capacity.max()) * max(1, int(count.sum())) < _INT64_SAFE:
        cumulative = np.cumsum(capacity * count)
    else:
        cumulative = np.cumsum(np.array([int(c) * int(n) for c, n in zip(capacity, count)], dtype=object))
    return PoolArrays(options, capacity, count, cumulative)


def pool_arrays(problem: Any) -> PoolArrays:
    """``problem``'s :class:`PoolArrays`, built once and kept on the (frozen) problem."""
    cached = problem.__dict__.get("_pool_arrays")
    if cached is None:
        cached = build_pool_arrays(problem.gpus, problem.options())
        object.__setattr__(problem, "_pool_arrays", cached)
    return cached
