"""The work of one batch from an ONNX graph: FLOPs, parameter and activation bytes by shape inference.

:func:`onnx_work` fixes the graph's first input to ``[batch, C, size, size]``, runs ONNX shape inference and
counts per node: ``Conv`` 2 x output elements x (input channels per group x kernel area), ``Gemm`` / ``MatMul``
2 x output elements x the inner dimension, every other node one operation per output element. Parameter bytes
are the initialisers', activation bytes the sum of every node output's (what a runtime without memory reuse
would hold; an upper bound on the peak). :func:`add_work_columns` adds ``gflops`` (per sample),
``param_mb`` and ``activation_mb`` to a profile, which :class:`~servopt.performance.WorkLatencyModel` then uses
as the work instead of pixels x batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError

__all__ = ["add_work_columns", "onnx_work"]

_BYTES = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}  # ONNX elem_type -> bytes


def _load(model: Any) -> Any:
    import onnx

    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ValidationError(f"{path}: no such ONNX file")
        return onnx.load(str(path))
    return model


def onnx_work(model: Any, batch_size: int, input_size: int | None = None) -> dict[str, float]:
    """FLOPs, parameter and activation bytes of one batch (``model``: an ``onnx.ModelProto`` or a path).

    Returns ``{"flops", "param_bytes", "activation_bytes"}``.

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
        elif k >= 2 and input_size is not None:
            d.dim_value = int(input_size)
    inferred = shape_inference.infer_shapes(proto)
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
    for node in inferred.graph.node:
        for out in node.output:
            shape, elem_type = shapes.get(out, ([], 1))
            elems = float(np.prod(shape)) if shape else 0.0
            activation += elems * _BYTES.get(elem_type, 4)
        shape = shapes.get(node.output[0], ([], 1))[0] if node.output else []
        elems = float(np.prod(shape)) if shape else 0.0
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
    return {"flops": flops, "param_bytes": float(param_bytes), "activation_bytes": activation}


def add_work_columns(frame: pd.DataFrame, graphs: dict[str, Any]) -> pd.DataFrame:
    """``frame`` with ``gflops`` (per sample), ``param_mb`` and ``activation_mb`` for rows whose ``model`` has
    a graph in ``graphs`` (model name -> ONNX path or proto); other rows get NaN.

    Raises
    ------
    ValidationError
        A graph names a model the profile does not have.
    """
    names = set(map(str, frame.get("model", pd.Series(dtype=object))))
    unknown = [m for m in graphs if m not in names]
    if unknown:
        raise ValidationError(f"ONNX graph(s) for {', '.join(unknown)}: no such model in the profile (models: "
                              f"{', '.join(sorted(names))})")
    out = frame.copy()
    for col in ("gflops", "param_mb", "activation_mb"):
        out[col] = np.nan
    cache: dict[tuple[str, int, int | None], dict[str, float]] = {}
    loaded = {m: _load(g) for m, g in graphs.items()}
    for i, row in out.iterrows():
        m = str(row.get("model"))
        if m not in loaded:
            continue
        size = row.get("input_size")
        size = int(size) if size is not None and not pd.isna(size) and size > 0 else None
        b = int(row["batch_size"])
        if (m, b, size) not in cache:
            cache[(m, b, size)] = onnx_work(loaded[m], b, size)
        w = cache[(m, b, size)]
        out.loc[i, "gflops"] = w["flops"] / b / 1e9
        out.loc[i, "param_mb"] = w["param_bytes"] / 2 ** 20
        out.loc[i, "activation_mb"] = w["activation_bytes"] / 2 ** 20
    return out
