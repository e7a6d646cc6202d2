"""The ``triton:`` section of a problem file: what a plan alone cannot say about the served models.

A plan fixes batch sizes, replicas and GPUs; the tensors a model takes and returns, the backend that runs it and
other deployment details come from this section (all keys optional; docs/triton.md has the reference)::

    triton:
      name: effnet                  # model (or ensemble) name; default: the problem's name or file stem
      backend: onnxruntime          # onnxruntime | tensorrt_plan | pytorch_libtorch | python
      version: 1                    # version folder, pinned by version_policy
      instance_kind: KIND_GPU       # KIND_GPU | KIND_CPU | KIND_AUTO; default: GPU plans KIND_GPU (KIND_CPU for
                                    # hardware named cpu-...), others KIND_CPU
      max_batch_size: 1             # variant_selection only (its plan has no batch size)
      max_queue_delay_us: 500       # overrides the queue delay derived from the plan
      warmup: auto                  # auto | true | false
      gpus_per_node: 8              # GPU plans: GPUs of one node (indices per node, a repository per node)
      template: base.pbtxt          # a config.pbtxt to start from (its other fields are kept)
      inputs:  [{name: INPUT, data_type: FP32, dims: [3, 224, 224]}]
      outputs: [{name: OUTPUT, data_type: FP32, dims: [1000]}]
      models:                       # per pipeline stage or per variant: backend, template, inputs, outputs
        detect: {outputs: [{name: BOXES, data_type: FP32, dims: [100, 4]}]}
        classify: {connect: {IMAGE: IMAGE, ROIS: detect.BOXES}}   # input -> feeding tensor
      kserve: {namespace: ml, runtime_version: 24.10-py3, memory: 4Gi}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError
from servopt.fields import Fields
from servopt.triton.kserve_options import KServeSpec, parse_kserve_section

__all__ = [
    "BACKENDS",
    "DATA_TYPES",
    "INSTANCE_KINDS",
    "TensorSpec",
    "ModelSpec",
    "KServeSpec",
    "TritonSpec",
    "default_instance_kind",
    "parse_triton_section",
    "safe_name",
]

#: --triton-backend value -> (config ``backend``, config ``platform``, default model file)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "onnxruntime": ("onnxruntime", "", "model.onnx"),
    "tensorrt_plan": ("", "tensorrt_plan", "model.plan"),
    "pytorch_libtorch": ("", "pytorch_libtorch", "model.pt"),
    "python": ("python", "", "model.py"),
}

#: Triton data types (``inference.DataType`` without TYPE_INVALID); files may omit the ``TYPE_`` prefix
DATA_TYPES = (
    "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64", "TYPE_INT8", "TYPE_INT16",
    "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING", "TYPE_BF16",
)

INSTANCE_KINDS = ("KIND_GPU", "KIND_CPU", "KIND_AUTO")

_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(name: str) -> str:
    """A model or folder name Triton accepts: letters, digits, ``_ . -``; anything else becomes ``_``.

    >>> safe_name("A100 80GB/sxm")
    'A100_80GB_sxm'
    """
    cleaned = _NAME_RE.sub("_", str(name)).strip("_")
    cleaned = cleaned.lstrip(".")
    return cleaned or "model"


def default_instance_kind(hardware: str) -> str:
    """The instance kind a GPU plan's hardware type is served with when ``triton.instance_kind`` is not given (or
    is KIND_AUTO): ``KIND_CPU`` for a CPU, i.e. a name with the word ``cpu`` (``servopt profile`` names a CPU
    ``cpu-<model>``), else ``KIND_GPU``.

    >>> default_instance_kind("cpu-intel-xeon-platinum-8370c"), default_instance_kind("triton-cpu")
    ('KIND_CPU', 'KIND_CPU')
    >>> default_instance_kind("A100-80GB"), default_instance_kind("cpuless")
    ('KIND_GPU', 'KIND_GPU')
    """
    return "KIND_CPU" if "CPU" in re.split(r"[^A-Za-z0-9]+", str(hardware).upper()) else "KIND_GPU"


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: ``name``, Triton ``data_type`` (``TYPE_FP32``) and ``dims`` without the batch."""

    name: str
    data_type: str
    dims: tuple[int, ...]

    @property
    def variable(self) -> bool:
        """True when a dimension is -1 (variable size)."""
        return any(d == -1 for d in self.dims)


@dataclass(frozen=True)
class ModelSpec:
    """Per-model settings (a pipeline stage or a variant); ``None`` means "use the section-wide value"."""

    backend: str | None = None
    template: Path | None = None
    inputs: tuple[TensorSpec, ...] | None = None
    outputs: tuple[TensorSpec, ...] | None = None
    #: pipeline stages: this stage's input name -> the tensor feeding it (an output of the previous stage,
    #: ``<stage>.<output>`` of an earlier one, or an ensemble input)
    connect: Mapping[str, str] | None = None


@dataclass(frozen=True)
class TritonSpec:
    """The validated ``triton:`` section (every field optional)."""

    name: str | None = None
    backend: str | None = None
    version: int = 1
    instance_kind: str | None = None
    max_batch_size: int | None = None
    max_queue_delay_us: int | None = None
    warmup: str | bool = "auto"
    #: GPUs of one node: GPU indices are numbered per node, one repository per node when a type spans nodes
    gpus_per_node: int = 8
    template: Path | None = None
    inputs: tuple[TensorSpec, ...] | None = None
    outputs: tuple[TensorSpec, ...] | None = None
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    kserve: KServeSpec = field(default_factory=KServeSpec)
    source: str = "<problem>"


def _keys_by_type() -> dict[str, tuple[tuple[type, ...], str, str]]:
    """``triton:`` keys that only some problems (and their plans) use -> (those types, the kinds they are, why
    the others have no use for it); another problem that gives one is refused, naming the file and key, rather than
    ignored. Types, not kind names, decide (docs/architecture.md)."""
    from servopt.formulations.fleet.problem import FleetProblem
    from servopt.formulations.fleet.types import FleetPlan
    from servopt.formulations.gpu.plan import GPUPlan
    from servopt.formulations.gpu.types import GPUProblemBase
    from servopt.formulations.variant_selection.problem import VariantSelection
    from servopt.formulations.variant_selection.types import VariantSelectionPlan

    return {
        "max_batch_size": ((VariantSelection, VariantSelectionPlan), "variant_selection",
                           "its plan sets each model's max_batch_size to the planned batch size"),
        "gpus_per_node": ((GPUProblemBase, GPUPlan, FleetProblem, FleetPlan), "min_gpus, max_throughput and fleet",
                          "its plan places replicas on CPU cores, not on GPUs"),
    }


def parse_triton_section(data: Any, source: str | Path | None = None, *, used_by: Any = None) -> TritonSpec:
    """Validate the raw ``triton:`` mapping of a problem file.

    Parameters
    ----------
    data : mapping or None
        The section as parsed from YAML; ``None`` gives all defaults.
    source : path, optional
        The problem file: named in errors; relative ``template`` paths are resolved against its folder.
    used_by : problem or plan, optional
        What the section is for: a key that only other problems use (``max_batch_size``: variant_selection;
        ``gpus_per_node``: GPU plans) is refused, not ignored.

    Returns
    -------
    TritonSpec

    Examples
    --------
    >>> spec = parse_triton_section({"backend": "python", "inputs": [{"name": "X", "data_type": "FP32",
    ...                                                               "dims": [4]}]}, "p.yaml")
    >>> spec.backend, spec.inputs[0].data_type, spec.inputs[0].dims
    ('python', 'TYPE_FP32', (4,))
    """
    label = str(source) if source is not None else "<problem>"
    base = Path(source).parent if source is not None else Path(".")
    if data is None:
        return TritonSpec(source=label)
    f = Fields(data, label, "triton")
    if used_by is not None and isinstance(data, Mapping):
        for key, (types, names, why) in _keys_by_type().items():
            if key in data and not isinstance(used_by, types):
                this = getattr(used_by, "kind", None) or type(used_by).__name__
                raise f.error(key, f"applies only to {names} problems, not to this {this} problem ({why}); "
                                   "remove it")
    name = f.str("name", None)
    backend = f.str("backend", None, choices=BACKENDS)
    version = f.int("version", 1, minimum=1)
    kind = f.str("instance_kind", None, choices=INSTANCE_KINDS)
    mbs = f.int("max_batch_size", None, minimum=0)
    delay = f.int("max_queue_delay_us", None, minimum=0)
    gpus_per_node = f.int("gpus_per_node", 8, minimum=1)
    warmup = f.raw("warmup", "auto")
    if warmup not in ("auto", True, False):
        raise f.error("warmup", f"expected auto, true or false, got {warmup!r}")
    template = _template(f, "template", base)
    inputs = _tensors(f, "inputs")
    outputs = _tensors(f, "outputs")
    models: dict[str, ModelSpec] = {}
    raw_models = f.mapping("models", None)
    if raw_models is not None:
        for key, value in raw_models.items():
            sub = f.sub("models", {}).sub(str(key), value)
            models[str(key)] = ModelSpec(
                backend=sub.str("backend", None, choices=BACKENDS),
                template=_template(sub, "template", base),
                inputs=_tensors(sub, "inputs"),
                outputs=_tensors(sub, "outputs"),
                connect=_connect(sub),
            )
            sub.done()
    kserve = KServeSpec()
    raw_kserve = f.mapping("kserve", None)
    if raw_kserve is not None:
        kserve = parse_kserve_section(f.sub("kserve", raw_kserve))
    f.done()
    if name is not None and safe_name(name) != name:
        raise f.error("name", f"{name!r} is not a valid model name (letters, digits, '_', '.', '-'); "
                              f"try {safe_name(name)!r}")
    return TritonSpec(name=name, backend=backend, version=version, instance_kind=kind, max_batch_size=mbs,
                      max_queue_delay_us=delay, warmup=warmup, gpus_per_node=gpus_per_node, template=template,
                      inputs=inputs, outputs=outputs,
                      models=models, kserve=kserve, source=label)


def _template(f: Fields, key: str, base: Path) -> Path | None:
    value = f.str(key, None)
    if value is None:
        return None
    path = Path(value)
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise f.error(key, f"template config {str(path)!r} does not exist (paths are relative to the problem file)")
    return path


def _connect(f: Fields) -> dict[str, str] | None:
    raw = f.mapping("connect", None)
    if raw is None:
        return None
    c = f.sub("connect", raw)
    out = {str(k): c.str(str(k)) for k in raw}
    c.done()
    return out


def _tensors(f: Fields, key: str) -> tuple[TensorSpec, ...] | None:
    items = f.list(key, None)
    if items is None:
        return None
    out = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        t = f.sub(key, {}).sub(i, item)
        name = t.str("name")
        dtype = t.str("data_type")
        full = dtype if dtype.startswith("TYPE_") else "TYPE_" + dtype
        if full not in DATA_TYPES:
            raise t.error("data_type", f"expected one of {', '.join(d[5:] for d in DATA_TYPES)}, got {dtype!r}")
        dims = t.list("dims")
        for j, d in enumerate(dims):
            if isinstance(d, bool) or not isinstance(d, int) or (d < 1 and d != -1):
                raise t.error(f"dims[{j}]", f"dimension must be integer >= 1, or -1 to indicate a variable-size "
                                            f"dimension, got {d!r}")
        if name in seen:
            raise t.error("name", f"tensor {name!r} is listed twice")
        seen.add(name)
        t.done()
        out.append(TensorSpec(name, full, tuple(dims)))
    return tuple(out)


def check_model_keys(spec: TritonSpec, known: list[str], what: str) -> None:
    """Reject ``models:`` entries that name no model of the plan (typos)."""
    unknown = sorted(set(spec.models) - set(known))
    if unknown:
        raise ValidationError(
            f"{spec.source}: key 'triton.models.{unknown[0]}': no {what} of that name "
            f"(known: {', '.join(known) or 'none'})"
        )
