"""Model artefacts (``model_file:`` in problem files): checking them, their tensors, their place in a repository.

A problem file names the file that serves each model (``model_file:`` at the top of a GPU problem, per variant of
``variant_selection``, per stage variant of ``pipeline``), relative to the problem file.
``servopt.fields.model_file`` checks it while the file is read (before solving); :func:`artifact_of` gives its format and sha256; :func:`onnx_tensors`
reads an ONNX graph's inputs and outputs, with the batch axis split off, in Triton's terms.

>>> FORMATS[".onnx"], FORMATS[".plan"], FORMATS[".pt"]
('onnxruntime', 'tensorrt_plan', 'pytorch_libtorch')
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError
from servopt.fields import MODEL_FORMATS as FORMATS
from servopt.fields import model_file

__all__ = ["FORMATS", "Artifact", "model_file", "artifact_of", "onnx_tensors", "PYTHON_ONNX_MODEL"]


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


def onnx_tensors(path: Path) -> tuple[list[tuple[str, str, tuple[int, ...]]], list[tuple[str, str, tuple[int, ...]]]]:
    """Inputs and outputs of an ONNX graph as (name, Triton data type, dims without the batch axis).

    The first axis of every input and output is the batch axis; it must be dynamic (a named or unknown dim), so
    that Triton can batch (``max_batch_size`` comes from the plan). Other dynamic axes become -1. Inputs that
    are initializers (weights) are not model inputs.
    """
    try:
        import onnx
    except ImportError as exc:
        raise ValidationError(f"{path}: reading tensors from an ONNX model needs the onnx package "
                              f"(pip install onnx): {exc}") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, OSError, ...
        raise ValidationError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    weights = {init.name for init in model.graph.initializer}

    def tensors(values: Any, what: str) -> list[tuple[str, str, tuple[int, ...]]]:
        out = []
        for v in values:
            if v.name in weights:
                continue
            tt = v.type.tensor_type
            dtype = _ONNX_TYPES.get(tt.elem_type)
            if dtype is None:
                raise ValidationError(f"{path}: {what} {v.name!r} has ONNX element type {tt.elem_type}, which "
                                      "Triton has no data type for")
            if not tt.HasField("shape") or not tt.shape.dim:
                raise ValidationError(f"{path}: {what} {v.name!r} has no shape; servopt needs at least the batch "
                                      "axis (export with a dynamic first axis)")
            dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tt.shape.dim]
            if dims[0] != -1:
                raise ValidationError(f"{path}: {what} {v.name!r} has a fixed first axis {dims[0]}; Triton batches "
                                      "on the first axis, so export the model with a dynamic batch axis "
                                      "(e.g. dynamic_axes={'" + v.name + "': {0: 'batch'}})")
            out.append((v.name, dtype, tuple(dims[1:])))
        return out

    return tensors(model.graph.input, "input"), tensors(model.graph.output, "output")


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
