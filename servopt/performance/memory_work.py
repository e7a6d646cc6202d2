"""The work axis of :class:`~servopt.performance.MaxBatchModel`'s family lines: memory = static + slope x batch x
the per-sample work.

The per-sample work is, per family, the first of these the model uses and the family has (recorded in its rows,
or at an input size never profiled the family's polynomial in the input size, :mod:`~servopt.performance.work_poly`):

1. ``act_peak_mb`` (only with ``MaxBatchModel(work_axis="act_peak")``), the most activation bytes of one sample
   alive at once when the graph's nodes run in order (:func:`servopt.performance.work.onnx_work`; the ONNX
   profilers record it, except for graphs with attention);
2. ``gflops``, the FLOPs of one sample (every profiler records them);
3. ``input_size²`` (the pixels); the batch alone without an input size feature.

Why the peak of live activations was tried: across the input sizes of the fresh CPU graphs (sets 20 and 21), batch
x this peak at the measured out-of-memory boundaries varies 1.01-1.15x on the CNN-likes, batch x FLOPs 1.07-1.31x,
and the calibration holds back what the axis misfits. On the ViT-like the peak grows more slowly with the input size
than the memory ONNX Runtime takes (slope / peak 2.9 -> 2.4 from 100 to 240 px, slope / FLOPs 13 -> 18), so a
graph with attention keeps its FLOPs. Why it is not the default: on fresh set 22, measured after this axis was
fixed, it put the ResNet-like's smallest size 2-6 % above the measured largest batch under each of three limits,
where the FLOPs axis put none above (docs/performance-models.md, *Memory and the largest batch*).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from servopt.performance.features import MEMORY_WORK_FEATURE, WORK_FEATURE

__all__ = ["MEMORY_AXES", "WORK_AXES", "fit_axes", "family_work", "with_memory_work"]

#: the per-sample work columns in increasing precedence (a later one, where a family has it, replaces an earlier)
MEMORY_AXES = (WORK_FEATURE, MEMORY_WORK_FEATURE)
#: the choices of ``MaxBatchModel(work_axis=...)``
WORK_AXES = ("flops", "act_peak")


def with_memory_work(X: Any, names: list[str]) -> Any:
    """``X`` (a query or training DataFrame) with each work column of :data:`MEMORY_AXES` that ``names`` (the
    fitted columns) include completed: absent or NaN becomes 0, unknown."""
    from servopt.performance.work_poly import with_work_column

    for name in MEMORY_AXES:
        X = with_work_column(X, names, name if name in names else None)
    return X


def fit_axes(X: np.ndarray, names: list[str], key_columns: list[int], size_index: int | None,
             use: tuple[str, ...] = MEMORY_AXES) -> dict[str, tuple[int, dict[tuple[float, ...], Any]]]:
    """Per work column of ``use`` among ``names`` that some family records: its index and one polynomial in the
    input size per family (``key_columns``), :func:`~servopt.performance.work_poly.fit_work_polys`."""
    from servopt.performance.work_poly import fit_work_polys

    out = {}
    for name in use:
        if name in names:
            polys = fit_work_polys(X, key_columns, size_index, names.index(name))
            if polys:
                out[name] = (names.index(name), polys)
    return out


def family_work(X: np.ndarray, axes: dict[str, tuple[int, dict[tuple[float, ...], Any]]], key_columns: list[int],
                batch_index: int, size_index: int | None) -> np.ndarray:
    """``batch x`` each row's per-sample work (the module docstring's order)."""
    from servopt.performance.work_poly import fill_work

    batch = X[:, batch_index]
    if size_index is None:
        out = batch.astype(float)
    else:
        size = X[:, size_index]
        out = batch * np.where(size > 0, size, 1.0) ** 2
    for name in MEMORY_AXES:
        if name not in axes:
            continue
        index, polys = axes[name]
        per_sample = fill_work(X, polys, key_columns, size_index, index)
        known = np.isfinite(per_sample) & (per_sample > 0)
        out = np.where(known, batch * np.where(known, per_sample, 0.0), out)
    return out
