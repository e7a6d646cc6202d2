"""Plan → ``ModelConfig`` messages: what each plan type becomes in a Triton model repository.

:func:`build_deployment` dispatches on the plan's type (``functools.singledispatch``): each plan type registers
its builder on ``_deployment_of`` below and reads the plan's fields; nothing here switches on a problem-kind
string (the kind is only written, as the deployment's label). Layout (docs/triton.md explains the choices):

* ``GPUPlan`` (``min_gpus`` / ``max_throughput``): one repository per hardware type (a Triton server runs on one
  node, and a node has one GPU type). With one hardware type the output folder *is* the repository; with several,
  each type gets a sub-folder named after it. Inside, one model per batch size used on that hardware (``<name>``
  when there is one, ``<name>_b<batch>`` otherwise), ``instance_group { kind: KIND_GPU gpus: [...] }`` over
  consecutive GPU indices of that hardware type.
* ``VariantSelectionPlan``: one model per variant given cores, a CPU instance group, ``routing.json`` with the
  load balancer's weights (each variant's share of the workload), and one server per model.
* ``PipelinePlan``: one model per stage with its batch size, queue delay and replicas, plus an ``ensemble`` model
  wiring each stage's outputs to the next stage's inputs.
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
from servopt.formulations.gpu.types import GPUPlan
from servopt.formulations.pipeline.types import PipelinePlan
from servopt.formulations.variant_selection.types import VariantSelectionPlan
from servopt.triton.spec import BACKENDS, TensorSpec, TritonSpec, check_model_keys, safe_name

__all__ = ["ModelEntry", "RepositoryLayout", "TritonDeployment", "build_deployment", "load_template", "default_io"]

#: CPU thread-count parameter per backend (onnxruntime_backend / pytorch_backend READMEs)
_THREAD_PARAMETER = {"onnxruntime": "intra_op_thread_count", "pytorch_libtorch": "INTRA_OP_THREAD_COUNT"}


@dataclass
class ModelEntry:
    """One model folder: its config, the version folders to create and a summary for ``servopt.json``."""

    config: Any
    versions: tuple[int, ...]
    info: dict[str, Any]

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


@dataclass
class TritonDeployment:
    """Everything a plan becomes, before it is written (``kind`` is a label for ``servopt.json`` and KServe)."""

    name: str
    kind: str
    repositories: list[RepositoryLayout]
    routing: dict[str, Any] | None = None
    extra_files: dict[str, str] = field(default_factory=dict)


@dataclass
class _Context:
    spec: TritonSpec
    backend: str | None
    templates: Mapping[str, Any]
    input_size: int
    problem: Any


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
    ctx = _Context(spec, triton_backend, _templates(spec, template), input_size, problem)
    return _deployment_of(plan, ctx)


@functools.singledispatch
def _deployment_of(plan: Any, ctx: _Context) -> TritonDeployment:
    """The deployment of one plan type; a new plan type registers its own (docs/architecture.md)."""
    raise ValidationError(f"cannot write a Triton repository for a {type(plan).__name__} plan")


def _base_name(ctx: _Context, label: str) -> str:
    """The model (or ensemble) name: ``triton.name``, else the problem's name or file stem, else ``label``."""
    if ctx.spec.name:
        return ctx.spec.name
    problem = ctx.problem
    name = getattr(problem, "name", None)
    if isinstance(name, str) and name.strip():
        return safe_name(name)
    for attr in ("source", "path"):
        src = getattr(problem, attr, None)
        if isinstance(src, (str, Path)) and str(src) and not str(src).startswith("<"):
            return safe_name(Path(src).stem)
    return label


def _templates(spec: TritonSpec, template: Any) -> dict[str, Any]:
    """Model key (``*`` for all) -> parsed template."""
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
    return {key: load_template(path) for key, path in paths.items()}


# ---------------------------------------------------------------------------------------------------------------
# one model


def _tensor_messages(specs: Sequence[TensorSpec], cls: Any) -> list[Any]:
    return [cls(name=t.name, data_type=mc.DataType.Value(t.data_type), dims=list(t.dims)) for t in specs]


def _io(ctx: _Context, key: str, default_in: Sequence[Any], default_out: Sequence[Any],
        spec_inputs: bool = True) -> tuple[list[Any], list[Any]]:
    """Inputs and outputs (as messages) of model ``key``: models.<key> > template > triton.inputs > default."""
    model = ctx.spec.models.get(key)
    tmpl = ctx.templates.get(key, ctx.templates.get("*"))
    result = []
    for attr, cls, default, use_spec in (("inputs", mc.ModelInput, default_in, spec_inputs),
                                         ("outputs", mc.ModelOutput, default_out, True)):
        own = getattr(model, attr) if model is not None else None
        section = getattr(ctx.spec, attr) if use_spec else None
        from_tmpl = list(getattr(tmpl, attr[:-1])) if tmpl is not None else []
        if own is not None:
            result.append(_tensor_messages(own, cls))
        elif from_tmpl:
            result.append([cls.FromString(t.SerializeToString()) for t in from_tmpl])
        elif section is not None:
            result.append(_tensor_messages(section, cls))
        else:
            result.append([cls.FromString(t.SerializeToString()) for t in default])
    return result[0], result[1]


def _backend(ctx: _Context, key: str) -> str | None:
    """The backend choice for model ``key``, or None to keep the template's."""
    if ctx.backend is not None:
        return ctx.backend
    model = ctx.spec.models.get(key)
    if model is not None and model.backend is not None:
        return model.backend
    if ctx.spec.backend is not None:
        return ctx.spec.backend
    tmpl = ctx.templates.get(key, ctx.templates.get("*"))
    if tmpl is not None and (tmpl.backend or tmpl.platform):
        return None
    return "onnxruntime"


def _model(ctx: _Context, key: str, name: str, inputs: list[Any], outputs: list[Any], *, max_batch_size: int,
           batch_size: int | None, delay_us: int | None, kind: str, count: int, gpus: Sequence[int] = (),
           parameters: Mapping[str, str] | None = None, model_file: str | None = None) -> Any:
    tmpl = ctx.templates.get(key, ctx.templates.get("*"))
    cfg = mc.ModelConfig()
    if tmpl is not None:
        cfg.CopyFrom(tmpl)
        for clash in ("sequence_batching", "ensemble_scheduling"):
            if tmpl.HasField(clash) and batch_size is not None and batch_size > 1:
                raise ValidationError(
                    f'template of model {name!r}: Field "dynamic_batching" is specified along with field '
                    f'"{clash}", another member of oneof "scheduling_choice" (remove {clash} from the template)')
        for fld in ("name", "max_batch_size", "input", "output", "instance_group", "model_warmup", "version_policy",
                    "dynamic_batching"):
            cfg.ClearField(fld)
    cfg.name = name
    backend = _backend(ctx, key)
    if backend is not None:
        cfg.backend, cfg.platform, default_file = BACKENDS[backend]
        if model_file and backend != "python" and not cfg.default_model_filename:
            cfg.default_model_filename = model_file + Path(default_file).suffix
    cfg.max_batch_size = max_batch_size
    cfg.input.extend(inputs)
    cfg.output.extend(outputs)
    cfg.version_policy.specific.versions.append(ctx.spec.version)
    if batch_size is not None and batch_size > 1:
        cfg.dynamic_batching.preferred_batch_size.append(batch_size)
        delay = ctx.spec.max_queue_delay_us if ctx.spec.max_queue_delay_us is not None else (delay_us or 0)
        cfg.dynamic_batching.max_queue_delay_microseconds = int(delay)
    group = cfg.instance_group.add(count=count, kind=mc.ModelInstanceGroup.Kind.Value(kind))
    if kind == "KIND_GPU":
        group.gpus.extend(gpus)
    resolved = backend or _template_backend_key(cfg)
    for key_, value in (parameters or {}).items():
        param = _THREAD_PARAMETER.get(resolved) if key_ == "threads" else key_
        if param and kind == "KIND_CPU":
            cfg.parameters[param].string_value = str(value)
    _add_warmup(ctx, cfg, batch_size if batch_size else (max_batch_size or 1))
    return cfg


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
    return ctx.spec.instance_kind or default


# ---------------------------------------------------------------------------------------------------------------
# plan types


@_deployment_of.register
def _gpu_deployment(plan: GPUPlan, ctx: _Context) -> TritonDeployment:
    base = _base_name(ctx, plan.kind)
    check_model_keys(ctx.spec, [], "model (min_gpus/max_throughput plans have one model per batch size)")
    by_hw: dict[str, dict[int, int]] = {}
    for g in plan.groups:
        if g.gpus <= 0:
            continue
        sizes = by_hw.setdefault(g.hardware, {})
        sizes[g.batch_size] = sizes.get(g.batch_size, 0) + g.gpus
    if not by_hw:
        raise ValidationError("the plan uses no GPU: there is no model to deploy")
    default_in, default_out = default_io(ctx.input_size)
    inputs, outputs = _io(ctx, base, _tensor_messages(default_in, mc.ModelInput),
                          _tensor_messages(default_out, mc.ModelOutput))
    repos = []
    slugs: set[str] = set()
    for hardware, sizes in by_hw.items():
        path = "." if len(by_hw) == 1 else safe_name(hardware)
        if path in slugs:
            raise ValidationError(f"hardware names {hardware!r} and another one map to the same folder {path!r}; "
                                  "rename one of them")
        slugs.add(path)
        models = []
        next_gpu = 0
        for batch, count in sorted(sizes.items(), key=lambda kv: -kv[0]):
            name = base if len(sizes) == 1 else f"{base}_b{batch}"
            gpu_ids = list(range(next_gpu, next_gpu + count))
            next_gpu += count
            gkind = _kind(ctx, "KIND_GPU")
            cfg = _model(ctx, base, name, inputs, outputs, max_batch_size=batch, batch_size=batch, delay_us=0,
                         kind=gkind, count=1 if gkind == "KIND_GPU" else count, gpus=gpu_ids)
            models.append(ModelEntry(cfg, (ctx.spec.version,), {
                "name": name, "batch_size": batch, "gpus": gpu_ids, "hardware": hardware}))
        repos.append(RepositoryLayout(path=path, models=models, hardware=hardware, gpus=next_gpu))
    return TritonDeployment(name=base, kind=plan.kind, repositories=repos)


@_deployment_of.register
def _variant_deployment(plan: VariantSelectionPlan, ctx: _Context) -> TritonDeployment:
    base = _base_name(ctx, "variant_selection")
    chosen = [v for v in plan.variants if v.cores > 0]
    if not chosen:
        raise ValidationError("the plan gives no variant any cores: there is no model to deploy")
    known = [str(v.name) for v in getattr(ctx.problem, "variants", ()) or () if hasattr(v, "name")]
    check_model_keys(ctx.spec, known or [v.name for v in plan.variants], "variant")
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
        inputs, outputs = _io(ctx, key, _tensor_messages(default_in, mc.ModelInput),
                              _tensor_messages(default_out, mc.ModelOutput))
        cfg = _model(ctx, key, name, inputs, outputs, max_batch_size=mbs, batch_size=mbs if mbs > 1 else None,
                     delay_us=0, kind=_kind(ctx, "KIND_CPU"), count=1,
                     parameters={"threads": max(1, int(cores))})
        models.append(ModelEntry(cfg, (ctx.spec.version,), {"name": name, "variant": key, "cores": cores,
                                                             "rps": rps}))
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
    default_in, default_out = default_io(ctx.input_size)
    kind = _kind(ctx, "KIND_CPU")
    models: list[ModelEntry] = []
    prev_out: list[Any] | None = None
    for i, (stage, key, name) in enumerate(zip(stages, keys, names)):
        if prev_out is None:
            dflt_in = _tensor_messages(default_in, mc.ModelInput)
        else:
            dflt_in = [mc.ModelInput(name="INPUT" if len(prev_out) == 1 else o.name, data_type=o.data_type,
                                     dims=list(o.dims)) for o in prev_out]
        inputs, outputs = _io(ctx, key, dflt_in, _tensor_messages(default_out, mc.ModelOutput),
                              spec_inputs=(i == 0))
        batch = int(stage.batch_size)
        replicas = int(stage.replicas)
        delay = int(round(float(stage.queue_ms or 0) * 1000))
        cfg = _model(ctx, key, name, inputs, outputs, max_batch_size=batch, batch_size=batch, delay_us=delay,
                     kind=kind, count=replicas, model_file=safe_name(stage.variant or name))
        models.append(ModelEntry(cfg, (ctx.spec.version,), {
            "name": name, "stage": key, "variant": stage.variant, "batch_size": batch,
            "replicas": replicas, "queue_delay_us": cfg.dynamic_batching.max_queue_delay_microseconds}))
        prev_out = list(cfg.output)
    ensemble = _ensemble(ctx, base, [m.config for m in models])
    models.append(ModelEntry(ensemble, (ctx.spec.version,), {"name": base, "ensemble": names}))
    repo = RepositoryLayout(path=".", models=models, entry=base,
                            cpu_cores=float(plan.cores) if plan.cores is not None else None)
    return TritonDeployment(name=base, kind="pipeline", repositories=[repo])


def _ensemble(ctx: _Context, name: str, stages: list[Any]) -> Any:
    """An ensemble chaining ``stages``: stage k's i-th output feeds stage k+1's i-th input."""
    cfg = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=min(s.max_batch_size for s in stages))
    cfg.input.extend(stages[0].input)
    cfg.output.extend(stages[-1].output)
    cfg.version_policy.specific.versions.append(ctx.spec.version)
    feeding = {io.name: io.name for io in stages[0].input}
    for k, stage in enumerate(stages):
        step = cfg.ensemble_scheduling.step.add(model_name=stage.name, model_version=-1)
        if k > 0 and len(stage.input) != len(stages[k - 1].output):
            raise ValidationError(
                f"stage '{stages[k - 1].name}' has {len(stages[k - 1].output)} output(s) but the next stage "
                f"'{stage.name}' takes {len(stage.input)} input(s); give matching triton.models.*.inputs/outputs")
        for io, tensor in zip(stage.input, list(feeding.values())):
            step.input_map[io.name] = tensor
        last = k == len(stages) - 1
        feeding = {}
        for io in stage.output:
            tensor = io.name if last else f"{stage.name}_{io.name}"
            step.output_map[io.name] = tensor
            feeding[io.name] = tensor
    return cfg
