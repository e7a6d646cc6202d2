"""The work of one sample recorded beside each profiled row: ``gflops``, ``param_mb`` and ``act_peak_mb``.

The profilers call a :class:`WorkColumns` once per input size, outside the timed runs:

* the ONNX Runtime profiler and the served-ONNX profiler (``--triton start``) count the graph with
  :func:`servopt.performance.work.onnx_work` at batch 1 (:func:`onnx_counter`): ``Conv`` / ``Gemm`` / ``MatMul``
  as 2 x multiply-adds, every other node one operation per output element; ``param_mb`` is the initialisers';
  ``act_peak_mb`` the most activation bytes alive at once when the nodes run in order (the memory model's
  work; left out for graphs with attention, :func:`servopt.performance.work.act_peak_mb`);
* the PyTorch runtime counts one batch-1 forward pass, on the device and in the profiled dtype, with
  :class:`torch.utils.flop_counter.FlopCounterMode` (:func:`torch_counter`): matrix products, convolutions and
  attention as 2 x multiply-adds, element-wise operations not counted; ``param_mb`` is the parameters' bytes in
  that dtype (no ``act_peak_mb``: the memory model uses ``gflops``).

The two conventions differ by the element-wise work (a few per cent on CNNs), so a family's rows (one runtime)
are consistent with each other, not with another runtime's. When counting fails for a model, the columns stay
empty, one line on stderr says why, and the profile goes on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

__all__ = ["WorkColumns", "onnx_counter", "torch_counter"]

_MIB = float(2 ** 20)


class WorkColumns:
    """``gflops`` / ``param_mb`` (and ``act_peak_mb``) per input size from ``count(size) -> (flops, param_bytes)``
    or ``(flops, param_bytes, act_peak_bytes)`` (NaN: none), cached; the first failure is reported once on
    ``stream`` (naming ``what``) and every row then gets no work columns."""

    def __init__(self, count: Callable[[int | None], tuple[float, ...]], what: str,
                 stream: TextIO | None = None) -> None:
        self._count = count
        self._what = what
        self._stream = stream
        self._cache: dict[int | None, dict[str, float]] = {}
        self.failed: str | None = None

    def __call__(self, size: int | None) -> dict[str, float]:
        """The columns for rows of input size ``size`` (empty when counting failed)."""
        if self.failed is not None:
            return {}
        if size not in self._cache:
            try:
                flops, param_bytes, *peak = self._count(size)
                if not flops > 0:
                    raise ValueError(f"counted {flops!r} FLOPs")
            except Exception as exc:  # any failure of a counter: the profile goes on without the columns
                self.failed = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
                print(f"servopt profile: note: no gflops/param_mb columns for {self._what} (counting the FLOPs "
                      f"failed: {self.failed})", file=self._stream or sys.stderr)
                return {}
            self._cache[size] = {"gflops": flops / 1e9, "param_mb": param_bytes / _MIB}
            if peak and peak[0] > 0:  # NaN (a graph with attention): no column
                self._cache[size]["act_peak_mb"] = peak[0] / _MIB
        return dict(self._cache[size])


def onnx_counter(model: str | Path | Any, spatial_axes: tuple[int, ...] | None = None
                 ) -> Callable[[int | None], tuple[float, float, float]]:
    """A counter for :class:`WorkColumns` from an ONNX file or proto (loaded once): batch 1, the first input's
    ``spatial_axes`` (default: its dynamic non-batch axes) set to the input size."""
    import onnx

    from servopt.performance.work import act_peak_mb, onnx_work

    proto = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
    if spatial_axes is None:
        initialisers = {t.name for t in proto.graph.initializer}
        first = [i for i in proto.graph.input if i.name not in initialisers][0]
        dims = first.type.tensor_type.shape.dim
        spatial_axes = tuple(k for k, d in enumerate(dims) if k > 0 and not d.HasField("dim_value"))

    def count(size: int | None) -> tuple[float, float, float]:
        work = onnx_work(proto, 1, size, spatial_axes=spatial_axes)
        return work["flops"], work["param_bytes"], act_peak_mb(work) * _MIB

    return count


def torch_counter(torch: Any, module: Any, device: Any, dtype: Any) -> Callable[[int | None], tuple[float, float]]:
    """A counter for :class:`WorkColumns`: one batch-1 forward pass of ``[1, 3, size, size]`` under
    :class:`torch.utils.flop_counter.FlopCounterMode` on ``device`` in ``dtype`` (no gradients)."""
    from torch.utils.flop_counter import FlopCounterMode

    def count(size: int | None) -> tuple[float, float]:
        if size is None:
            raise ValueError("no input size")
        x = torch.rand(1, 3, int(size), int(size), device=device, dtype=dtype)
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            module(x)
        param_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
        return float(counter.get_total_flops()), float(param_bytes)

    return count
