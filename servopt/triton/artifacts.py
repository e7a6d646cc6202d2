"""Model artefacts (``model_file:`` in problem files): checking them, their tensors, their place in a repository.

A problem file names the file that serves each model (``model_file:`` at the top of a GPU problem, per variant of
``variant_selection``, per stage variant of ``pipeline``), relative to the problem file.
:func:`model_file` checks it while the file is read (before solving): the file exists and has a known suffix;
:func:`check_model_files` that an ONNX file parses, before ``solve --out`` solves (once: the parse is cached for the
writer); :func:`artifact_of` gives its format and sha256; :func:`onnx_tensors`
reads an ONNX graph's inputs and outputs, with the batch axis split off, in Triton's terms.

>>> FORMATS[".onnx"], FORMATS[".plan"], FORMATS[".pt"]
('onnxruntime', 'tensorrt_plan', 'pytorch_libtorch')
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError
from servopt.fields import MODEL_FORMATS as FORMATS
from servopt.fields import model_file

__all__ = ["FORMATS", "Artifact", "model_file", "check_model_files", "artifact_of", "onnx_tensors",
           "PYTHON_ONNX_MODEL"]


#: ONNX TensorProto element type -> Triton data type
_ONNX_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16", 6: "TYPE_INT32",
               7: "TYPE_INT64", 8: "TYPE_STRING", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64",
               12: "TYPE_UINT32", 13: "TYPE_UINT64", 16: "TYPE_BF16"}


@dataclass(frozen=True)
class Artifact:
    """One model file: its path, the backend its format belongs to, its sha256 (hex)."""

    path: Path
    format: str
    sha256: str


def artifact_of(path: Path) -> Artifact:
    """The :class:`Artifact` of a checked model file (reads it once for the checksum)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read the model file ({exc})") from None
    return Artifact(Path(path), FORMATS[Path(path).suffix.lower()], digest.hexdigest())


def check_model_files(document: Any, source: str | Path) -> None:
    """Refuse an ONNX ``model_file`` of a problem document (the mapping read from ``source``) that does not parse,
    naming the problem file, the key and the value: ``servopt solve --out`` calls it before solving, since the
    writer reads every model file's tensors (before, a text file named ``bad.onnx`` failed after the solve, naming
    neither). :func:`servopt.fields.model_file` already refused a missing file, a folder and an unknown suffix
    while the problem was read; the parse waits for ``--out`` so that a solve alone never imports onnx. Each file
    is parsed once (cached): the writer reads its tensors from that parse. Without the onnx package nothing is
    checked here (the writer then says what is missing)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return
    base = Path(source).parent
    for key, value in _model_files(document):
        path = base / value
        if path.suffix.lower() != ".onnx":
            continue
        try:
            _onnx_graph(path)
        except _Unreadable as exc:
            raise ValidationError(f"{source}: key {key!r}: {value!r}: {path} is not a readable ONNX model "
                                  f"({exc})") from None


def _model_files(data: Any, where: str = "") -> list[tuple[str, str]]:
    """Every ``model_file`` string of a problem document with its key path as errors name it
    (``stages[0].variants[1].model_file``)."""
    found: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            at = f"{where}.{key}".lstrip(".")
            if key == "model_file" and isinstance(value, str):
                found.append((at, value))
            else:
                found.extend(_model_files(value, at))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found.extend(_model_files(value, f"{where}[{i}]"))
    return found


class _Unreadable(Exception):
    """The reason an ONNX file cannot be parsed."""


def _onnx_graph(path: Path) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The graph inputs (initializers excluded) and outputs of an ONNX file as ``(name, element type, dims)``,
    dims ``None`` without a shape and ``-1`` for a dynamic dim; parsed once per file version (path, mtime, size).
    Raises :class:`_Unreadable`."""
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise _Unreadable(f"{type(exc).__name__}: {exc.strerror or exc}") from None
    return _parse_onnx(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _parse_onnx(path: str, mtime_ns: int, size: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, OSError, ...
        raise _Unreadable(f"{type(exc).__name__}: {exc}") from None
    weights = {init.name for init in model.graph.initializer}

    def tensors(values: Any) -> tuple[Any, ...]:
        out = []
        for v in values:
            if v.name in weights:
                continue
            tt = v.type.tensor_type
            dims = None
            if tt.HasField("shape") and tt.shape.dim:
                dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tt.shape.dim)
            out.append((v.name, tt.elem_type, dims))
        return tuple(out)

    return tensors(model.graph.input), tensors(model.graph.output)


def onnx_tensors(path: Path) -> tuple[list[tuple[str, str, tuple[int, ...]]], list[tuple[str, str, tuple[int, ...]]]]:
    """Inputs and outputs of an ONNX graph as (name, Triton data type, dims without the batch axis).

    The first axis of every input and output is the batch axis; it must be dynamic (a named or unknown dim), so
    that Triton can batch (``max_batch_size`` comes from the plan). Other dynamic axes become -1. Inputs that
    are initializers (weights) are not model inputs.
    """
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise ValidationError(f"{path}: reading tensors from an ONNX model needs the onnx package "
                              f"(pip install onnx): {exc}") from None
    try:
        inputs, outputs = _onnx_graph(path)
    except _Unreadable as exc:
        raise ValidationError(f"{path}: not a readable ONNX model ({exc})") from None

    def tensors(values: Any, what: str) -> list[tuple[str, str, tuple[int, ...]]]:
        out = []
        for name, elem_type, dims in values:
            dtype = _ONNX_TYPES.get(elem_type)
            if dtype is None:
                raise ValidationError(f"{path}: {what} {name!r} has ONNX element type {elem_type}, which "
                                      "Triton has no data type for")
            if dims is None:
                raise ValidationError(f"{path}: {what} {name!r} has no shape; servopt needs at least the batch "
                                      "axis (export with a dynamic first axis)")
            if dims[0] != -1:
                raise ValidationError(f"{path}: {what} {name!r} has a fixed first axis {dims[0]}; Triton batches "
                                      "on the first axis, so export the model with a dynamic batch axis "
                                      "(e.g. dynamic_axes={'" + name + "': {0: 'batch'}})")
            out.append((name, dtype, tuple(dims[1:])))
        return out

    return tensors(inputs, "input"), tensors(outputs, "output")


#: ``model.py`` for Triton's Python backend: runs the ``model.onnx`` beside it with ONNX Runtime (CPU)
PYTHON_ONNX_MODEL = '''"""Triton Python backend model written by servopt: runs model.onnx (same folder) with ONNX
Runtime."""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

#: a RunOptions entry Triton's ONNX Runtime backend sets from the model-config parameter of that name
_SHRINKAGE = "memory.enable_memory_arena_shrinkage"


def _flag(parameters, key):
    """A boolean parameter as Triton's backends parse one: true/on/1 or false/off/0, any case."""
    value = str(parameters[key]).strip().lower()
    if value in ("true", "on", "1"):
        return True
    if value in ("false", "off", "0"):
        return False
    raise ValueError(f"parameter {key}: failed to convert {parameters[key]!r} to boolean")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        here = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        parameters = {k: v.get("string_value") for k, v in config.get("parameters", {}).items()}
        threads = parameters.get("intra_op_thread_count")
        options.intra_op_num_threads = int(threads) if threads else 1
        options.inter_op_num_threads = 1
        # read as Triton's ONNX Runtime backend reads them (servopt profile --mem-pattern off)
        if "enable_mem_pattern" in parameters:
            options.enable_mem_pattern = _flag(parameters, "enable_mem_pattern")
        if "enable_mem_arena" in parameters:
            options.enable_cpu_mem_arena = _flag(parameters, "enable_mem_arena")
        # e.g. "cpu:0": the CPU arena gives back what it does not hold after each run (ONNX Runtime checks the value)
        self.run_options = ort.RunOptions()
        if parameters.get(_SHRINKAGE):
            self.run_options.add_run_config_entry(_SHRINKAGE, parameters[_SHRINKAGE])
        self.session = ort.InferenceSession(os.path.join(here, "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            feed = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs}
            results = self.session.run(self.outputs, feed, self.run_options)
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value))
                       for name, value in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
'''
