"""Plan → ``ModelConfig`` messages: what each plan type becomes in a Triton model repository.

:func:`build_deployment` dispatches on the plan's type (``functools.singledispatch``): each plan type registers
its builder on ``_deployment_of`` below and reads the plan's fields; nothing here switches on a problem-kind
string (the kind is only written, as the deployment's label). Layout (docs/triton.md explains the choices):

* ``GPUPlan`` (``min_gpus`` / ``max_throughput``): one repository per hardware type (a Triton server runs on one
  node, and a node has one GPU type). With one hardware type the output folder *is* the repository; with several,
  each type gets a sub-folder named after it. Inside, one model per batch size used on that hardware (``<name>``
  when there is one, ``<name>_b<batch>`` otherwise), ``instance_group { count: 1 kind: KIND_GPU gpus: [...] }``
  over consecutive GPU indices of that hardware type; a type with more GPUs than ``triton.gpus_per_node`` gets one
  repository per node (``node<i>``) with node-local indices.
* ``VariantSelectionPlan``: one model per variant given cores, a CPU instance group, ``routing.json`` with the
  load balancer's weights (each variant's share of the workload), and one server per model.
* ``PipelinePlan``: one model per stage with its batch size, queue delay and replicas, plus an ``ensemble`` model
  wiring stage outputs to the next stage's inputs by tensor name (or ``connect:``), types and shapes checked.

Each model's file (``model_file:`` in the problem) is recorded on its :class:`ModelEntry` and copied into the
version folder by :mod:`servopt.triton.write`; ONNX files give the model's tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from servopt.exceptions import ValidationError
from servopt.formulations.gpu.plan import GPUPlan
from servopt.formulations.pipeline.types import PipelinePlan
from servopt.formulations.variant_selection.types import VariantSelectionPlan
from servopt.triton.artifacts import PYTHON_ONNX_MODEL, Artifact, artifact_of, onnx_tensors
from servopt.triton.ensemble import ensemble_config
from servopt.triton.spec import (BACKENDS, TensorSpec, TritonSpec, check_model_keys, default_instance_kind,
                                 safe_name)

__all__ = ["ModelEntry", "RepositoryLayout", "TritonDeployment", "build_deployment", "load_template", "default_io"]

#: CPU thread-count parameter per backend (onnxruntime_backend / pytorch_backend READMEs)
_THREAD_PARAMETER = {"onnxruntime": "intra_op_thread_count", "pytorch_libtorch": "INTRA_OP_THREAD_COUNT",
                     "python": "intra_op_thread_count"}  # read by the generated model.py


@dataclass
class ModelEntry:
    """One model folder: its config, the version folders to create and a summary for ``servopt.json``.

    ``artifact`` is the model file copied into each version folder as ``model_filename``; ``version_files`` are
    further text files of the version folder (``model.py``); ``missing`` says why the model is "config only"
    (no model file, or tensors that are servopt's placeholder rather than the model's).
    """

    config: Any
    versions: tuple[int, ...]
    info: dict[str, Any]
    artifact: Artifact | None = None
    model_filename: str | None = None
    version_files: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class RepositoryLayout:
    """One Triton model repository (``path`` relative to the output folder, ``.`` for the folder itself)."""

    path: str
    models: list[ModelEntry]
    hardware: str | None = None
    gpus: int = 0
    cpu_cores: float | None = None
    entry: str | None = None
    #: every model runs on its own Triton server (``cores`` in its ``info``), not the repository on one server
    server_per_model: bool = False
    #: servers that run this repository (fleet plans: GPUs that serve the same model alone)
    replicas: int = 1
    #: the MIG slice profile each server runs on (fleet plans), None for whole GPUs
    mig_profile: str | None = None
    #: fleet replicas: ``{"per_replica_rps", "headroom"}``, the autoscaler's target follows from them
    autoscale: dict[str, float] | None = None
    #: why the repository's servers are a fixed placement (co-located models), shown to the cluster's readers
    fixed_reason: str | None = None


@dataclass
class TritonDeployment:
    """Everything a plan becomes, before it is written (``kind`` is a label for ``servopt.json`` and KServe)."""

    name: str
    kind: str
    repositories: list[RepositoryLayout]
    routing: dict[str, Any] | None = None
    extra_files: dict[str, str] = field(default_factory=dict)
    #: further top-level keys of ``servopt.json`` (fleet plans: ``servers``, ``predictions``)
    summary_extra: dict[str, Any] = field(default_factory=dict)
    #: repository path -> the keys of its own ``<path>/servopt.json`` (fleet plans: each server verifies alone)
    repository_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class _Context:
    spec: TritonSpec
    backend: str | None
    templates: Mapping[str, Any]
    input_size: int
    problem: Any
    gpu_plan: bool = False
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    onnx: dict[str, Any] = field(default_factory=dict)
    #: model key -> (key path in the problem file or None, template path) of the template it uses
    template_keys: dict[str, tuple[str | None, Path]] = field(default_factory=dict)
    #: model_file path -> its key path in the problem file (``variants[0].model_file``)
    file_keys: dict[str, str] = field(default_factory=dict)
    #: model (config) name -> model key
    model_keys: dict[str, str] = field(default_factory=dict)

    def in_file(self, key: str | None, message: str) -> str:
        """``message`` naming the problem file and ``key`` (errors of libraries that do not know the file)."""
        source = self.spec.source
        if message.startswith(f"{source}:"):
            return message
        return f"{source}: key {key!r}: {message}" if key else f"{source}: {message}"

    def template_of(self, key: str) -> tuple[str | None, Path] | None:
        """(key path, file) of the template model ``key`` uses, None without one."""
        return self.template_keys.get(key, self.template_keys.get("*"))


def load_template(path: str | Path) -> Any:
    """Parse a template ``config.pbtxt`` into a ``ModelConfig`` (errors name the file)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read the template config ({exc})") from None
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ValidationError(f"{path}: not a valid Triton model config: {exc}") from None


def default_io(input_size: int) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """An image classifier's tensors: ``INPUT`` FP32 [3, S, S] -> ``OUTPUT`` FP32 [1000]."""
    return ((TensorSpec("INPUT", "TYPE_FP32", (3, input_size, input_size)),),
            (TensorSpec("OUTPUT", "TYPE_FP32", (1000,)),))


def build_deployment(problem: Any, plan: Any, spec: TritonSpec, *, triton_backend: str | None = None,
                     template: Any = None) -> TritonDeployment:
    """Turn a typed plan into model configs, checked by nobody yet (see ``rules``).

    ``plan`` is a :class:`GPUPlan`, :class:`VariantSelectionPlan` or :class:`PipelinePlan` (what ``decode`` and
    the policies return); other types are refused. ``template`` (path or mapping model key -> path) overrides
    ``triton.template`` / ``triton.models.*.template``.
    """
    if _deployment_of.dispatch(type(plan)) is _deployment_of.dispatch(object):
        known = ", ".join(sorted(t.__name__ for t in _deployment_of.registry if t is not object))
        raise ValidationError(f"cannot write a Triton repository for a {type(plan).__name__} plan; known plan "
                              f"types: {known} (pass the plan servopt.solve returns, not its to_dict())")
    if triton_backend is not None and triton_backend not in BACKENDS:
        raise ValidationError(f"--triton-backend: expected one of {', '.join(BACKENDS)}, got {triton_backend!r}")
    size = getattr(problem, "input_size", None)
    input_size = size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 224
    paths = _template_paths(spec, template)
    ctx = _Context(spec, triton_backend, {key: load_template(path) for key, path in paths.items()}, input_size,
                   problem, template_keys=_paths_keys(spec, paths))
    deployment = _deployment_of(plan, ctx)
    _check_rules(deployment, ctx)
    return deployment


def _check_rules(deployment: TritonDeployment, ctx: _Context) -> None:
    """Triton's load rules on every repository, where the problem file is known: a refusal names the file and
    the key whose setting breaks the rule (the model's template, else the ``triton`` section)."""
    from servopt.triton.rules import TritonRuleError, check_repository

    for repo in deployment.repositories:
        configs = {m.name: m.config for m in repo.models}
        if len(configs) != len(repo.models):
            continue  # build_repository names the clash
        try:
            check_repository(configs, {m.name: m.versions for m in repo.models})
        except TritonRuleError as exc:
            template = ctx.template_of(ctx.model_keys.get(exc.model, exc.model))
            if template is None:
                where = ctx.in_file("triton" if getattr(ctx.problem, "triton", None) else None, "")
            elif template[0]:
                where = ctx.in_file(template[0], f"{template[1]}: ")
            else:  # a template= argument, not from the problem file
                where = f"{template[1]}: "
            raise TritonRuleError(exc.model, exc.triton_message, context=where) from None


def _paths_keys(spec: TritonSpec, paths: Mapping[str, Path]) -> dict[str, tuple[str | None, Path]]:
    """Model key (``*`` for all) -> (its key path in the problem file, None for a ``template=`` argument; path)."""
    out: dict[str, tuple[str | None, Path]] = {}
    for key, path in paths.items():
        if key == "*":
            out[key] = ("triton.template" if spec.template is not None and path == spec.template else None, path)
        else:
            model = spec.models.get(key)
            own = model is not None and model.template is not None and path == model.template
            out[key] = (f"triton.models.{key}.template" if own else None, path)
    return out


@functools.singledispatch
def _deployment_of(plan: Any, ctx: _Context) -> TritonDeployment:
    """The deployment of one plan type; a new plan type registers its own (docs/architecture.md)."""
    raise ValidationError(f"cannot write a Triton repository for a {type(plan).__name__} plan")


def _base_name(ctx: _Context, label: str) -> str:
    """The model (or ensemble) name: ``triton.name``, else the problem's name or file stem, else ``label``.

    A ``name:`` the file gives must be a valid model name, as ``triton.name`` must (refused, naming the file, key
    and value, not rewritten); a name servopt derives (the file's stem, a GPU problem's ``model:``) is made one
    (``my problem.yaml`` -> ``my_problem``)."""
    if ctx.spec.name:
        return ctx.spec.name
    problem = ctx.problem
    name = getattr(problem, "name", None)
    if isinstance(name, str) and name.strip():
        derived = name in (Path(ctx.spec.source).stem, getattr(problem, "model", None))
        if safe_name(name) != name and not derived:
            raise ValidationError(ctx.in_file("name", f"{name!r} is not a valid model name (letters, digits, "
                                                      f"'_', '.', '-'); try {safe_name(name)!r}, or set "
                                                      "triton.name"))
        return safe_name(name)
    for attr in ("source", "path"):
        src = getattr(problem, attr, None)
        if isinstance(src, (str, Path)) and str(src) and not str(src).startswith("<"):
            return safe_name(Path(src).stem)
    return label


def _template_paths(spec: TritonSpec, template: Any) -> dict[str, Path]:
    """Model key (``*`` for all) -> template file."""
    paths: dict[str, Path] = {}
    if spec.template is not None:
        paths["*"] = spec.template
    for key, model in spec.models.items():
        if model.template is not None:
            paths[key] = model.template
    if isinstance(template, Mapping):
        paths.update({str(k): Path(v) for k, v in template.items()})
    elif template is not None:
        paths = {"*": Path(template)}
    for path in paths.values():
        if not path.is_file():
            raise ValidationError(f"{path}: template config not found")
    return paths


# ---------------------------------------------------------------------------------------------------------------
# one model


def _tensor_messages(specs: Sequence[TensorSpec], cls: Any) -> list[Any]:
    return [cls(name=t.name, data_type=mc.DataType.Value(t.data_type), dims=list(t.dims)) for t in specs]


def _artifact(ctx: _Context, path: Any, file_key: str | None = None) -> Artifact | None:
    """The checked artefact of a ``model_file`` (read once per file); ``file_key`` is its key in the problem file."""
    if path is None:
        return None
    key = str(path)
    if file_key is not None:
        ctx.file_keys.setdefault(key, file_key)
    if key not in ctx.artifacts:
        try:
            ctx.artifacts[key] = artifact_of(Path(path))
        except ValidationError as exc:
            raise ValidationError(ctx.in_file(file_key, str(exc))) from None
    return ctx.artifacts[key]


def _at_size(dims: list[int], size: Any) -> list[int]:
    """An image input's dims with free spatial axes (``[C, -1, -1]``, without the batch axis) fixed at the plan's
    ``size``: the plan was made for that size, and a client (servopt verify's load generator, perf_analyzer) fills a
    free axis with 1, which would measure a 1 x 1 image. Other dims, and any dims without a size, as they are."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0 and len(dims) == 3 \
            and dims[0] > 0 and dims[1] < 0 and dims[2] < 0:
        return [dims[0], size, size]
    return dims


def _io(ctx: _Context, key: str, default_in: Sequence[Any], default_out: Sequence[Any], *,
        spec_inputs: bool = True, artifact: Artifact | None = None, previous: Sequence[Any] | None = None
        ) -> tuple[list[Any], list[Any], tuple[str, str]]:
    """Inputs and outputs (as messages) of model ``key``, and where each came from.

    Order: ``models.<key>`` > template > (GPU plans: ``triton.inputs/outputs``) > the ONNX artefact >
    ``triton.inputs/outputs`` > the previous stage's outputs (pipeline inputs) > the placeholder default.
    """
    model = ctx.spec.models.get(key)
    tmpl = ctx.templates.get(key, ctx.templates.get("*"))
    from_artifact: tuple[list[Any], list[Any]] | None = None
    if artifact is not None and artifact.format == "onnxruntime":
        if str(artifact.path) not in ctx.onnx:
            try:
                ctx.onnx[str(artifact.path)] = onnx_tensors(artifact.path)
            except ValidationError as exc:  # the file's own message (fixed batch axis, ...) and where it is named
                raise ValidationError(ctx.in_file(ctx.file_keys.get(str(artifact.path)), str(exc))) from None
        ins, outs = ctx.onnx[str(artifact.path)]
        size = getattr(ctx.problem, "input_size", None)  # the plan's input size, where the problem names one
        from_artifact = ([mc.ModelInput(name=n, data_type=mc.DataType.Value(t), dims=_at_size(list(d), size))
                          for n, t, d in ins],
                         [mc.ModelOutput(name=n, data_type=mc.DataType.Value(t), dims=list(d)) for n, t, d in outs])
    result, sources = [], []
    for i, (attr, cls, default, use_spec) in enumerate((("inputs", mc.ModelInput, default_in, spec_inputs),
                                                        ("outputs", mc.ModelOutput, default_out, True))):
        own = getattr(model, attr) if model is not None else None
        section = getattr(ctx.spec, attr) if use_spec else None
        from_tmpl = list(getattr(tmpl, attr[:-1])) if tmpl is not None else []
        candidates: list[tuple[str, Any]] = [
            ("triton.models", _tensor_messages(own, cls) if own is not None else None),
            ("template", [cls.FromString(t.SerializeToString()) for t in from_tmpl] if from_tmpl else None)]
        section_msgs = _tensor_messages(section, cls) if section is not None else None
        if ctx.gpu_plan:
            candidates.append(("triton", section_msgs))
        candidates.append(("model_file", from_artifact[i] if from_artifact is not None else None))
        if not ctx.gpu_plan:
            candidates.append(("triton", section_msgs))
        if i == 0 and previous is not None:
            candidates.append(("previous stage", list(previous)))
        candidates.append(("default", [cls.FromString(t.SerializeToString()) for t in default]))
        source, chosen = next((s, c) for s, c in candidates if c is not None)
        if source == "default" and artifact is not None:
            kind = {"tensorrt_plan": "a TensorRT plan", "pytorch_libtorch": "a TorchScript model"}.get(
                artifact.format, "this model file")
            raise ValidationError(
                f"{ctx.spec.source}: model {key!r}: its model_file {str(artifact.path)!r} is {kind}, whose tensors "
                f"servopt cannot read; give them under triton: ({attr}, or models.{key}.{attr}) as "
                "[{name, data_type, dims}] with dims without the batch axis")
        result.append(chosen)
        sources.append(source)
    return result[0], result[1], (sources[0], sources[1])


def _backend(ctx: _Context, key: str, artifact: Artifact | None = None) -> str | None:
    """The backend choice for model ``key``, or None to keep the template's.

    With a model file, the backend is its format's unless one is chosen; a chosen backend must load the file
    (``python`` runs an ONNX file with ONNX Runtime through a generated ``model.py``).
    """
    model = ctx.spec.models.get(key)
    tmpl = ctx.templates.get(key, ctx.templates.get("*"))
    for chosen, where in ((ctx.backend, "--triton-backend"),
                          (model.backend if model is not None else None, f"triton.models.{key}.backend"),
                          (ctx.spec.backend, "triton.backend"),
                          (_template_backend_key(tmpl) if tmpl is not None else None, "the template's backend")):
        if chosen is None:
            continue
        if artifact is not None and chosen != artifact.format and not (
                chosen == "python" and artifact.format == "onnxruntime"):
            allowed = artifact.format + (" or python" if artifact.format == "onnxruntime" else "")
            raise ValidationError(
                f"{ctx.spec.source}: model {key!r}: {where} is {chosen}, which cannot load its model_file "
                f"{str(artifact.path)!r} (a {artifact.format} model); use {allowed}")
        if where == "the template's backend" and artifact is None:
            return None
        return chosen
    if artifact is not None:
        return artifact.format
    return "onnxruntime"


def _template_error(ctx: _Context, key: str, message: str) -> str:
    """``message`` about model ``key``'s template, naming the problem file, the key and the template file."""
    where = ctx.template_of(key)
    if where is None:
        return message
    file_key, path = where
    return ctx.in_file(file_key, f"{path}: {message}") if file_key else f"{path}: {message}"


#: fields of a template's instance group that the plan decides (the others are kept)
_PLAN_GROUP_FIELDS = ("count", "kind", "gpus")


def _model(ctx: _Context, key: str, name: str, inputs: list[Any], outputs: list[Any], *, max_batch_size: int,
           batch_size: int | None, delay_us: int | None, kind: str, count: int, gpus: Sequence[int] = (),
           parameters: Mapping[str, str] | None = None, model_file: str | None = None,
           artifact: Artifact | None = None) -> tuple[Any, str | None, dict[str, str]]:
    """The config of one model, the file name its artefact gets in the version folder, and generated files."""
    tmpl = ctx.templates.get(key, ctx.templates.get("*"))
    ctx.model_keys[name] = key
    cfg = mc.ModelConfig()
    tmpl_batching = None
    tmpl_group = None
    if tmpl is not None:
        cfg.CopyFrom(tmpl)
        for clash in ("sequence_batching", "ensemble_scheduling"):
            if tmpl.HasField(clash) and batch_size is not None and batch_size > 1:
                raise ValidationError(_template_error(
                    ctx, key, f'template of model {name!r}: Field "dynamic_batching" is specified along with '
                              f'field "{clash}", another member of oneof "scheduling_choice" (remove {clash} from '
                              'the template)'))
        if len(tmpl.instance_group) > 1:
            raise ValidationError(_template_error(
                ctx, key, f"template of model {name!r}: {len(tmpl.instance_group)} instance_group entries; servopt "
                          "writes the plan's one group (count, kind, gpus) and keeps the other fields of one "
                          "template group (rate_limiter, host_policy, ...): give at most one"))
        if tmpl.HasField("dynamic_batching"):
            tmpl_batching = tmpl.dynamic_batching
        if tmpl.instance_group:
            tmpl_group = tmpl.instance_group[0]
        for fld in ("name", "max_batch_size", "input", "output", "instance_group", "version_policy",
                    "dynamic_batching"):
            cfg.ClearField(fld)
    cfg.name = name
    backend = _backend(ctx, key, artifact)
    filename = None
    files: dict[str, str] = {}
    if backend is not None:
        cfg.backend, cfg.platform, default_file = BACKENDS[backend]
        if artifact is not None:
            filename = cfg.default_model_filename or (
                "model.onnx" if backend == "python" else default_file)
            if backend == "python":
                cfg.ClearField("default_model_filename")
                filename = "model.onnx"
                files["model.py"] = PYTHON_ONNX_MODEL
        elif model_file and backend != "python" and not cfg.default_model_filename:
            cfg.default_model_filename = model_file + Path(default_file).suffix
    elif artifact is not None:
        filename = cfg.default_model_filename or BACKENDS[artifact.format][2]
    cfg.max_batch_size = max_batch_size
    cfg.input.extend(inputs)
    cfg.output.extend(outputs)
    cfg.version_policy.specific.versions.append(ctx.spec.version)
    if tmpl_batching is not None:
        # priority levels, queue policy, preserve_ordering, ... are kept; the plan sets the preferred size
        cfg.dynamic_batching.CopyFrom(tmpl_batching)
        cfg.dynamic_batching.ClearField("preferred_batch_size")
    if batch_size is not None and batch_size > 1:
        cfg.dynamic_batching.preferred_batch_size.append(batch_size)
        if ctx.spec.max_queue_delay_us is not None:
            delay = ctx.spec.max_queue_delay_us
        elif tmpl_batching is not None and tmpl_batching.max_queue_delay_microseconds:
            delay = tmpl_batching.max_queue_delay_microseconds
        else:
            delay = delay_us or 0
        cfg.dynamic_batching.max_queue_delay_microseconds = int(delay)
    group = cfg.instance_group.add()
    if tmpl_group is not None:
        group.CopyFrom(tmpl_group)
        for fld in _PLAN_GROUP_FIELDS:
            group.ClearField(fld)
    group.count = count
    group.kind = mc.ModelInstanceGroup.Kind.Value(kind)
    if kind == "KIND_GPU":
        group.gpus.extend(gpus or [0])
    resolved = backend or _template_backend_key(cfg)
    for key_, value in (parameters or {}).items():
        param = _THREAD_PARAMETER.get(resolved) if key_ == "threads" else key_
        if param and kind == "KIND_CPU":
            cfg.parameters[param].string_value = str(value)
    # what the profiles were measured with (servopt profile --mem-pattern off), unless the template says otherwise
    for param, value in (getattr(ctx.problem, "serving_parameters", None) or {}).items():
        if param not in cfg.parameters:
            cfg.parameters[param].string_value = str(value)
    if not cfg.model_warmup:  # a template's own warm-up samples are kept
        _add_warmup(ctx, cfg, batch_size if batch_size else (max_batch_size or 1))
    return cfg, filename, files


def _template_backend_key(cfg: Any) -> str | None:
    for key, (backend, platform, _) in BACKENDS.items():
        if (backend and cfg.backend == backend) or (platform and cfg.platform == platform):
            return key
    return None


def _add_warmup(ctx: _Context, cfg: Any, batch: int) -> None:
    mode = ctx.spec.warmup
    if mode is False:
        return
    variable = [io.name for io in cfg.input if any(d == -1 for d in io.dims)]
    if variable:
        if mode is True:
            raise ValidationError(
                f"{ctx.spec.source}: key 'triton.warmup': warm-up needs fixed input dims, but input "
                f"'{variable[0]}' of model '{cfg.name}' has a variable (-1) dimension; give its dims or set "
                "warmup: auto")
        return
    warm = cfg.model_warmup.add(name=f"{cfg.name}_warmup", batch_size=batch if cfg.max_batch_size > 0 else 1,
                                count=1)
    for io in cfg.input:
        value = warm.inputs[io.name]
        value.data_type = io.data_type
        value.dims.extend(io.dims)
        value.zero_data = True


def _kind(ctx: _Context, default: str) -> str:
    """The instance kind: ``triton.instance_kind``, with KIND_AUTO resolved to the plan's own kind (a GPU plan
    runs on GPUs, the others on CPU cores), so that Triton never guesses."""
    kind = ctx.spec.instance_kind or default
    return default if kind == "KIND_AUTO" else kind


def _entry(ctx: _Context, cfg: Any, info: dict[str, Any], artifact: Artifact | None, filename: str | None,
           files: dict[str, str], sources: tuple[str, str]) -> ModelEntry:
    """A model entry with its artefact recorded in ``info`` and what keeps it "config only"."""
    missing = []
    if artifact is None:
        missing.append(f"model {cfg.name!r}: no model_file")
    placeholder = [what for what, src in zip(("inputs", "outputs"), sources) if src == "default"]
    if placeholder:
        missing.append(f"model {cfg.name!r}: {' and '.join(placeholder)} are servopt's placeholder (image "
                       "classifier INPUT/OUTPUT), not the model's")
    info = dict(info)
    info["tensors_from"] = {"inputs": sources[0], "outputs": sources[1]}
    info["model_file"] = None if artifact is None else {
        "source": str(artifact.path), "file": filename, "format": artifact.format, "sha256": artifact.sha256}
    return ModelEntry(cfg, (ctx.spec.version,), info, artifact=artifact, model_filename=filename,
                      version_files=files, missing=missing)


# ---------------------------------------------------------------------------------------------------------------
# plan types


def _node_split(gpu_ids: Sequence[int], per_node: int) -> dict[int, list[int]]:
    """Node -> the node-local GPU indices among ``gpu_ids`` (indices numbered across nodes of ``per_node``)."""
    nodes: dict[int, list[int]] = {}
    for g in gpu_ids:
        nodes.setdefault(g // per_node, []).append(g % per_node)
    return nodes


@_deployment_of.register
def _gpu_deployment(plan: GPUPlan, ctx: _Context) -> TritonDeployment:
    ctx.gpu_plan = True
    base = _base_name(ctx, plan.kind)
    check_model_keys(ctx.spec, [], "model (min_gpus/max_throughput plans have one model per batch size)")
    by_hw: dict[str, dict[int, int]] = {}
    instances: dict[tuple[str, int], int] = {}  # instances per GPU (Model Analyzer profiles measured several)
    for g in plan.groups:
        if g.gpus <= 0:
            continue
        sizes = by_hw.setdefault(g.hardware, {})
        sizes[g.batch_size] = sizes.get(g.batch_size, 0) + g.gpus
        instances[(g.hardware, g.batch_size)] = int(getattr(g, "instances_per_gpu", 1) or 1)
    # the dynamic batcher waits long enough for single-image clients to fill the planned batch (GPUPlan.predictions)
    delays = {(x["hardware"], x["batch_size"]): x["max_queue_delay_us"] for x in plan.predictions()["groups"]}
    if not by_hw:
        raise ValidationError("the plan uses no GPU: there is no model to deploy")
    artifact = _artifact(ctx, getattr(ctx.problem, "model_file", None), "model_file")
    default_in, default_out = default_io(ctx.input_size)
    inputs, outputs, sources = _io(ctx, base, _tensor_messages(default_in, mc.ModelInput),
                                   _tensor_messages(default_out, mc.ModelOutput), artifact=artifact)
    per_node = ctx.spec.gpus_per_node
    cores = getattr(ctx.problem, "cores", None)  # what the profiles were measured with (CPU instances only)
    repos = []
    slugs: set[str] = set()
    for hardware, sizes in by_hw.items():
        path = "." if len(by_hw) == 1 else safe_name(hardware)
        if path in slugs:
            raise ValidationError(f"hardware names {hardware!r} and another one map to the same folder {path!r}; "
                                  "rename one of them")
        slugs.add(path)
        total = sum(sizes.values())
        nodes = -(-total // per_node)
        node_models: dict[int, list[ModelEntry]] = {n: [] for n in range(nodes)}
        next_gpu = 0
        # profiles measured on a CPU (hardware `cpu-...`) are served on CPU instances unless the file says otherwise
        gkind = _kind(ctx, default_instance_kind(hardware))
        for batch, count in sorted(sizes.items(), key=lambda kv: -kv[0]):
            name = base if len(sizes) == 1 else f"{base}_b{batch}"
            gpu_ids = list(range(next_gpu, next_gpu + count))
            next_gpu += count
            for node, local in _node_split(gpu_ids, per_node).items():
                # Triton starts `count` instances on each listed GPU: the profile's instances per GPU (1 unless
                # it was measured with more) on every GPU of the plan
                per_gpu = instances[(hardware, batch)]
                cfg, filename, files = _model(
                    ctx, base, name, inputs, outputs, max_batch_size=batch, batch_size=batch,
                    delay_us=delays[(hardware, batch)],
                    kind=gkind, count=per_gpu if gkind == "KIND_GPU" else len(local) * per_gpu, gpus=local,
                    parameters={"threads": max(1, int(cores))} if cores else None, artifact=artifact)
                info = {"name": name, "batch_size": batch, "gpus": local, "hardware": hardware}
                if per_gpu != 1:
                    info["instances_per_gpu"] = per_gpu
                if nodes > 1:
                    info["node"] = node
                node_models[node].append(_entry(ctx, cfg, info, artifact, filename, files, sources))
        for node, models in node_models.items():
            node_path = path if nodes == 1 else (f"node{node}" if path == "." else f"{path}/node{node}")
            used = sum(len(m.info["gpus"]) for m in models)
            repos.append(RepositoryLayout(path=node_path, models=models, hardware=hardware, gpus=used))
    return TritonDeployment(name=base, kind=plan.kind, repositories=repos)


@_deployment_of.register
def _variant_deployment(plan: VariantSelectionPlan, ctx: _Context) -> TritonDeployment:
    base = _base_name(ctx, "variant_selection")
    chosen = [v for v in plan.variants if v.cores > 0]
    if not chosen:
        raise ValidationError("the plan gives no variant any cores: there is no model to deploy")
    problem_variants = {str(v.name): v for v in getattr(ctx.problem, "variants", ()) or () if hasattr(v, "name")}
    check_model_keys(ctx.spec, list(problem_variants) or [v.name for v in plan.variants], "variant")
    mbs = ctx.spec.max_batch_size if ctx.spec.max_batch_size is not None else 1
    default_in, default_out = default_io(ctx.input_size)
    total = sum(float(v.rps) for v in chosen)
    models, routes, names = [], [], set()
    for v in chosen:
        key = v.name
        name = safe_name(key)
        if name in names:
            raise ValidationError(f"variants {key!r} and another one map to the same model name {name!r}")
        names.add(name)
        cores = float(v.cores)
        rps = float(v.rps)
        artifact = _artifact(ctx, getattr(problem_variants.get(key), "model_file", None),
                             f"variants[{list(problem_variants).index(key)}].model_file"
                             if key in problem_variants else "model_file")
        inputs, outputs, sources = _io(ctx, key, _tensor_messages(default_in, mc.ModelInput),
                                       _tensor_messages(default_out, mc.ModelOutput), artifact=artifact)
        kind = _kind(ctx, "KIND_CPU")
        cfg, filename, files = _model(ctx, key, name, inputs, outputs, max_batch_size=mbs,
                                      batch_size=mbs if mbs > 1 else None, delay_us=0, kind=kind, count=1,
                                      parameters={"threads": max(1, int(cores))}, artifact=artifact)
        models.append(_entry(ctx, cfg, {"name": name, "variant": key, "cores": cores, "rps": rps}, artifact,
                             filename, files, sources))
        routes.append({"model": name, "variant": key, "cores": cores, "rps": rps,
                       "weight": round(rps / total, 6) if total > 0 else round(1.0 / len(chosen), 6)})
    cores = sum(float(v.cores) for v in chosen)
    # InfAdapter runs each variant as its own deployment: one server per model, routed by weight
    repo = RepositoryLayout(path=".", models=models, cpu_cores=cores, server_per_model=True)
    routing = {"workload_rps": total, "routes": routes}
    return TritonDeployment(name=base, kind="variant_selection", repositories=[repo], routing=routing)


@_deployment_of.register
def _pipeline_deployment(plan: PipelinePlan, ctx: _Context) -> TritonDeployment:
    base = _base_name(ctx, "pipeline")
    stages = list(plan.stages)
    if not stages:
        raise ValidationError("the plan has no stage: there is no model to deploy")
    keys = [s.name for s in stages]
    check_model_keys(ctx.spec, keys, "stage")
    names = [safe_name(k) for k in keys]
    if len(set(names)) != len(names):
        raise ValidationError(f"stage names {', '.join(keys)} do not give distinct model names")
    if base in names:
        raise ValidationError(f"the ensemble would be named {base!r} like one of its stages; set triton.name")
    problem_stages = {str(s.name): s for s in getattr(ctx.problem, "stages", ()) or () if hasattr(s, "name")}
    default_in, default_out = default_io(ctx.input_size)
    kind = _kind(ctx, "KIND_CPU")
    models: list[ModelEntry] = []
    prev_out: list[Any] | None = None
    for i, (stage, key, name) in enumerate(zip(stages, keys, names)):
        variants = {str(v.name): v for v in getattr(problem_stages.get(key), "variants", ()) or ()}
        artifact = _artifact(ctx, getattr(variants.get(str(stage.variant)), "model_file", None),
                             f"stages[{list(problem_stages).index(key)}].variants"
                             f"[{list(variants).index(str(stage.variant))}].model_file"
                             if str(stage.variant) in variants else "model_file")
        previous = None
        if prev_out is not None:
            previous = [mc.ModelInput(name="INPUT" if len(prev_out) == 1 else o.name, data_type=o.data_type,
                                      dims=list(o.dims)) for o in prev_out]
        inputs, outputs, sources = _io(ctx, key, _tensor_messages(default_in, mc.ModelInput),
                                       _tensor_messages(default_out, mc.ModelOutput), spec_inputs=(i == 0),
                                       artifact=artifact, previous=previous)
        batch = int(stage.batch_size)
        replicas = int(stage.replicas)
        delay = int(round(float(stage.queue_ms or 0) * 1000))
        cfg, filename, files = _model(ctx, key, name, inputs, outputs, max_batch_size=batch, batch_size=batch,
                                      delay_us=delay, kind=kind, count=replicas,
                                      model_file=safe_name(stage.variant or name), artifact=artifact)
        models.append(_entry(ctx, cfg, {
            "name": name, "stage": key, "variant": stage.variant, "batch_size": batch,
            "replicas": replicas, "queue_delay_us": cfg.dynamic_batching.max_queue_delay_microseconds},
            artifact, filename, files, sources))
        prev_out = list(cfg.output)
    ensemble = ensemble_config(ctx.spec, base, [m.config for m in models], keys)
    models.append(ModelEntry(ensemble, (ctx.spec.version,), {"name": base, "ensemble": names}))
    repo = RepositoryLayout(path=".", models=models, entry=base,
                            cpu_cores=float(plan.cores) if plan.cores is not None else None)
    return TritonDeployment(name=base, kind="pipeline", repositories=[repo])

