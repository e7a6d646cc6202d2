"""The work of one batch from an ONNX graph: FLOPs, parameter and activation bytes by shape inference.

:func:`onnx_work` fixes the graph's first input to ``[batch, C, size, size]``, runs ONNX shape inference and
counts per node: ``Conv`` 2 x output elements x (input channels per group x kernel area), ``Gemm`` / ``MatMul``
2 x output elements x the inner dimension, every other node one operation per output element. Parameter bytes
are the initialisers', activation bytes the sum of every node output's (what a runtime without memory reuse
would hold; an upper bound on the peak), and the peak of live activations (each tensor freed after its last
reader, in the graph's order). :func:`add_work_columns` adds ``gflops`` (per sample), ``param_mb``,
``activation_mb`` and ``act_peak_mb`` (per sample) to a profile: :class:`~servopt.performance.WorkLatencyModel`
uses ``gflops`` as the work instead of pixels x batch, :class:`~servopt.performance.MaxBatchModel`
``act_peak_mb`` (else ``gflops``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError

__all__ = ["act_peak_mb", "add_work_columns", "onnx_work"]

_WORK_COLUMNS = ("gflops", "param_mb", "activation_mb", "act_peak_mb")

_HEAVY = ("Conv", "Gemm", "MatMul")
_BYTES = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}  # ONNX elem_type -> bytes


def _load(model: Any) -> Any:
    import onnx

    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ValidationError(f"{path}: no such ONNX file")
        return onnx.load(str(path))
    return model


def onnx_work(model: Any, batch_size: int, input_size: int | None = None,
              spatial_axes: tuple[int, ...] | None = None) -> dict[str, float]:
    """FLOPs, parameter and activation bytes of one batch (``model``: an ``onnx.ModelProto`` or a path).

    ``spatial_axes`` are the first input's axes set to ``input_size`` (default: every axis from 2 on, NCHW; the
    profiler passes ``(1, 2)`` for NHWC inputs). Shape inference runs with data propagation, so shapes computed
    by ``Shape`` / ``Gather`` / ``Concat`` chains (a transformer's reshapes) are known.

    Returns ``{"flops", "param_bytes", "activation_bytes", "peak_activation_bytes", "attention_matmuls"}``:
    ``peak_activation_bytes`` is the most bytes of activations alive at once when the nodes run in the graph's
    order, each tensor freed after its last reader (what a runtime that reuses memory needs at least);
    ``attention_matmuls`` counts ``MatMul`` nodes of two computed inputs.

    Raises
    ------
    ValidationError
        No such file, or shape inference leaves the output shape of a ``Conv``, ``Gemm`` or ``MatMul`` unknown
        (its FLOPs could not be counted; the message names the node).

    Examples
    --------
    >>> from servopt.measure.onnx_models import tiny_cnn
    >>> w1, w4 = onnx_work(tiny_cnn(), 1, 32), onnx_work(tiny_cnn(), 4, 32)
    >>> round(w4["flops"] / w1["flops"], 6), w4["param_bytes"] == w1["param_bytes"]
    (4.0, True)
    """
    import onnx
    from onnx import shape_inference

    proto = onnx.ModelProto()
    proto.CopyFrom(_load(model))
    initialisers = {t.name for t in proto.graph.initializer}
    first = [i for i in proto.graph.input if i.name not in initialisers][0]
    dims = first.type.tensor_type.shape.dim
    for k, d in enumerate(dims):
        if k == 0:
            d.dim_value = int(batch_size)
        elif input_size is not None and (k in spatial_axes if spatial_axes is not None else k >= 2):
            d.dim_value = int(input_size)
    inferred = shape_inference.infer_shapes(proto, data_prop=True)
    shapes: dict[str, tuple[list[int], int]] = {}
    for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        t = v.type.tensor_type
        shapes[v.name] = ([d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim], t.elem_type)
    param_bytes = 0
    for t in inferred.graph.initializer:
        shapes[t.name] = (list(t.dims), t.data_type)
        param_bytes += int(np.prod(t.dims)) * _BYTES.get(t.data_type, 4)
    flops = 0.0
    activation = 0.0
    nodes = list(inferred.graph.node)
    for node in nodes:
        for out in node.output:
            activation += _tensor_bytes(shapes, out)
        shape = shapes.get(node.output[0], ([], 1))[0] if node.output else []
        elems = float(np.prod(shape)) if shape else 0.0
        if node.op_type in _HEAVY and (not shape or 0 in shape):
            raise ValidationError(f"onnx_work: shape inference left the output shape of {node.op_type} node "
                                  f"{node.name or node.output[0]!r} unknown ({shape or 'no shape'}); its FLOPs "
                                  f"cannot be counted")
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in shapes:
            weight = shapes[node.input[1]][0]
            flops += 2.0 * elems * float(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul") and node.input and node.input[0] in shapes:
            a = shapes[node.input[0]][0]
            transposed = any(at.name == "transA" and at.i for at in node.attribute)
            inner = (a[-2] if transposed else a[-1]) if a else 0
            flops += 2.0 * elems * float(inner)
        else:
            flops += elems
    return {"flops": flops, "param_bytes": float(param_bytes), "activation_bytes": activation,
            "peak_activation_bytes": _peak_live_bytes(inferred.graph, nodes, shapes, initialisers),
            "attention_matmuls": float(_attention_matmuls(nodes, initialisers))}


def act_peak_mb(work: dict[str, float]) -> float:
    """The memory model's per-sample work from :func:`onnx_work` at batch 1 (MiB): the peak of live activations,
    NaN for a graph with attention (a ``MatMul`` of two activations), whose memory on ONNX Runtime grows faster
    with the input size than this estimate does (the memory model then uses its FLOPs; docs/performance-models.md,
    *Largest batch*)."""
    if work.get("attention_matmuls", 0.0) > 0:
        return float("nan")
    return float(work["peak_activation_bytes"]) / 2 ** 20


def _attention_matmuls(nodes: list[Any], initialisers: set[str]) -> int:
    """``MatMul`` nodes whose two inputs are both computed (neither a parameter nor a ``Constant``): an
    attention's query x key and score x value products."""
    constants = set(initialisers) | {o for n in nodes if n.op_type == "Constant" for o in n.output}
    return sum(1 for n in nodes if n.op_type == "MatMul" and len(n.input) == 2
               and not any(name in constants for name in n.input))


def _tensor_bytes(shapes: dict[str, tuple[list[int], int]], name: str) -> float:
    shape, elem_type = shapes.get(name, ([], 1))
    return float(np.prod(shape)) * _BYTES.get(elem_type, 4) if shape else 0.0


def _peak_live_bytes(graph: Any, nodes: list[Any], shapes: dict[str, tuple[list[int], int]],
                     initialisers: set[str]) -> float:
    """The most bytes of activations alive at once when the nodes run in the graph's (topological) order: a
    tensor lives from the node that makes it (the graph's inputs: from the start) to the last node that reads it
    (the graph's outputs: to the end), and a node's inputs and outputs are alive together while it runs.
    Initialisers (parameters) are not activations. Nodes of subgraphs (``If`` / ``Loop`` bodies) are not
    followed."""
    end = len(nodes)
    born: dict[str, int] = {i.name: 0 for i in graph.input if i.name not in initialisers}
    last: dict[str, int] = dict(born)
    for k, node in enumerate(nodes):
        for name in node.input:
            if name in last:
                last[name] = k
        for name in node.output:
            if name:
                born.setdefault(name, k)
                last[name] = max(last.get(name, k), k)
    for out in graph.output:
        if out.name in last:
            last[out.name] = end
    change = np.zeros(end + 2)
    for name, start in born.items():
        size = _tensor_bytes(shapes, name)
        change[start] += size
        change[last[name] + 1] -= size
    return float(np.cumsum(change)[:end + 1].max()) if end else float(change[0])


def add_work_columns(frame: pd.DataFrame, graphs: dict[str, Any]) -> pd.DataFrame:
    """``frame`` with ``gflops`` (FLOPs of one sample at the row's input size, from a batch-1 graph),
    ``param_mb``, ``activation_mb`` (of the row's batch) and ``act_peak_mb`` (the peak of live activations of one
    sample; NaN for a graph with attention, :func:`act_peak_mb`) filled in for the rows of the models in ``graphs``
    (model name -> ONNX path or proto) that lack them; every other cell is kept (NaN where the column is new).

    Raises
    ------
    ValidationError
        A graph names a model the profile does not have, or a graph cannot be read or counted.

    Examples
    --------
    >>> import pandas as pd
    >>> from servopt.measure.onnx_models import tiny_cnn
    >>> frame = pd.DataFrame({"model": ["a", "a", "b"], "input_size": [32, 64, 32], "batch_size": [1, 4, 1]})
    >>> out = add_work_columns(frame, {"a": tiny_cnn()})
    >>> round(float(out.gflops[1] / out.gflops[0]), 1), bool(out.gflops.isna()[2])
    (4.0, True)
    """
    names = set(map(str, frame.get("model", pd.Series(dtype=object))))
    unknown = [m for m in graphs if m not in names]
    if unknown:
        raise ValidationError(f"ONNX graph(s) for {', '.join(unknown)}: no such model in the profile (models: "
                              f"{', '.join(sorted(names))})")
    out = frame.copy()
    for col in _WORK_COLUMNS:
        if col not in out.columns:
            out[col] = np.nan
        else:
            out[col] = pd.to_numeric(out[col], errors="coerce")
    cache: dict[tuple[str, int, int | None], dict[str, float]] = {}
    loaded = {m: _load(g) for m, g in graphs.items()}

    def work(m: str, b: int, size: int | None) -> dict[str, float]:
        if (m, b, size) not in cache:
            cache[(m, b, size)] = onnx_work(loaded[m], b, size)
        return cache[(m, b, size)]

    for i, row in out.iterrows():
        m = str(row.get("model"))
        if m not in loaded or all(pd.notna(row[c]) for c in _WORK_COLUMNS):
            continue
        size = row.get("input_size")
        size = int(size) if size is not None and not pd.isna(size) and size > 0 else None
        b = int(row["batch_size"])
        if pd.isna(row["gflops"]):
            out.loc[i, "gflops"] = work(m, 1, size)["flops"] / 1e9
        if pd.isna(row["param_mb"]):
            out.loc[i, "param_mb"] = work(m, 1, size)["param_bytes"] / 2 ** 20
        if pd.isna(row["activation_mb"]):
            out.loc[i, "activation_mb"] = work(m, b, size)["activation_bytes"] / 2 ** 20
        if pd.isna(row["act_peak_mb"]):
            out.loc[i, "act_peak_mb"] = act_peak_mb(work(m, 1, size))
    return out
