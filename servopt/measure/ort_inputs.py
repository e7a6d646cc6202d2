"""The inputs ONNX Runtime profiling feeds: each input's name, shape and dtype, the checks that the requested
grid fits them, and random tensors of a batch and input size (height and width of 4-D image inputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError

__all__ = ["ORT_TYPES", "check_sizes", "input_spec", "make_feeds", "spatial_axes"]

ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64",
}


def input_spec(ort: Any, model_bytes: bytes, path: Path, providers: list[str]) -> list[tuple[str, list[Any], str]]:
    """(name, shape, numpy dtype) of every model input; validates that the profiler can fill each one."""
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(model_bytes, opts, providers=providers)
    except Exception as exc:
        raise ValidationError(f"{path}: ONNX Runtime cannot load this model ({str(exc).strip()[:300]})") from None
    spec = []
    for arg in session.get_inputs():
        if arg.type not in ORT_TYPES:
            raise ValidationError(f"{path}: input {arg.name!r} has type {arg.type}; the profiler feeds "
                                  f"{', '.join(ORT_TYPES)}")
        shape = list(arg.shape)
        if not shape:
            raise ValidationError(f"{path}: input {arg.name!r} is a scalar; the profiler needs a batch dimension")
        spatial = spatial_axes(shape)
        for axis, dim in enumerate(shape[1:], start=1):
            if axis not in spatial and not isinstance(dim, int):
                raise ValidationError(
                    f"{path}: input {arg.name!r} has dynamic dimension {axis} ({dim!r}); the profiler fills only "
                    "the batch dimension and the height/width of 4-D image inputs (NCHW or NHWC)"
                )
        spec.append((arg.name, shape, ORT_TYPES[arg.type]))
    del session
    return spec


def check_sizes(spec: list[tuple[str, list[Any], str]], sizes: list[int], path: Path, batches: list[int],
                 find_max_batch: bool = False) -> None:
    """Refuse, before anything is measured, a grid the inputs cannot take: a batch size other than a fixed batch
    dimension, an input size other than fixed spatial dimensions, several input sizes for a model without a 4-D
    image input (the size would have no effect: identical points under different labels)."""
    for name, shape, _ in spec:
        dim = shape[0]
        if isinstance(dim, int):
            bad = [b for b in batches if b != dim]
            if bad:
                raise ValidationError(
                    f"{path}: input {name!r} has a fixed batch size {dim}, so batch size(s) "
                    f"{', '.join(map(str, bad))} cannot be profiled (--batch-sizes); export the model with a "
                    f"dynamic batch dimension, or profile only batch size {dim}"
                )
            if find_max_batch:
                raise ValidationError(
                    f"{path}: input {name!r} has a fixed batch size {dim}, so --find-max-batch (find_max_batch) "
                    "cannot search other batch sizes; export the model with a dynamic batch dimension"
                )
        for axis in spatial_axes(shape):
            dim = shape[axis]
            bad = [s for s in sizes if isinstance(dim, int) and dim != s]
            if bad:
                raise ValidationError(
                    f"{path}: input {name!r} has a fixed size {dim} on axis {axis}, so input size(s) "
                    f"{', '.join(map(str, bad))} cannot be profiled; export the model with dynamic height and "
                    f"width, or profile only input size {dim}"
                )
    if len(sizes) > 1 and not any(spatial_axes(shape) for _, shape, _ in spec):
        inputs = ", ".join(f"{name!r} {[d if isinstance(d, int) else '?' for d in shape]}" for name, shape, _ in spec)
        raise ValidationError(
            f"{path}: no input is a 4-D image (inputs: {inputs}), so the input size has no effect and "
            f"--input-sizes (input_sizes) {','.join(map(str, sizes))} would measure the same configuration "
            "under several labels; give one value (it becomes the input_size column)"
        )


def spatial_axes(shape: list[Any]) -> tuple[int, ...]:
    """Height and width axes of a 4-D image input: (2, 3) for NCHW, (1, 2) for NHWC, () otherwise."""
    if len(shape) != 4:
        return ()
    if isinstance(shape[3], int) and shape[3] in (1, 3, 4) and not (isinstance(shape[1], int) and shape[1] <= 4):
        return (1, 2)
    return (2, 3)


def make_feeds(spec: list[tuple[str, list[Any], str]], batch: int, size: int, seed: int) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape, dtype in spec:
        spatial = spatial_axes(shape)
        dims = [batch]
        for axis, dim in enumerate(shape[1:], start=1):
            if axis in spatial:
                dims.append(size)
            else:
                dims.append(int(dim))
        if np.issubdtype(np.dtype(dtype), np.floating):
            feeds[name] = rng.random(dims, dtype=np.float32).astype(dtype, copy=False)
        else:
            feeds[name] = rng.integers(0, 10, size=dims).astype(dtype)
    return feeds
