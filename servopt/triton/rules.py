"""Triton's load-time rules, checked before anything is written.

Each check mirrors one rule of Triton's core (``src/model_config_utils.cc``: ``ValidateModelConfig``,
``ValidateInstanceGroup``, ``ValidateModelInput/Output``, ``ValidateEnsembleSchedulingConfig``; and
``src/ensemble_scheduler/ensemble_utils.cc``: ``ValidateEnsembleConfig``) and reports Triton's own message, so a
user sees here what the server would print at load time. Protobuf itself already enforces the rest (unknown
fields, bad enums, one scheduling choice per model).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from servopt.exceptions import ValidationError

__all__ = ["TritonRuleError", "check_model", "check_ensemble", "check_repository"]

ENSEMBLE = "ensemble"

#: platform -> backend Triton infers for it (core ``GetBackendTypeFromPlatform``)
_PLATFORM_BACKEND = {
    "tensorrt_plan": "tensorrt",
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "tensorflow_graphdef": "tensorflow",
    "tensorflow_savedmodel": "tensorflow",
}
_KNOWN_BACKENDS = {"tensorrt", "onnxruntime", "pytorch", "tensorflow"}


class TritonRuleError(ValidationError):
    """A configuration Triton would refuse to load; ``str(err)`` ends with Triton's own message."""

    def __init__(self, model: str, triton_message: str, context: str = "") -> None:
        self.model = model
        self.triton_message = triton_message
        #: where the setting comes from (``p.yaml: key 'triton.template': t.pbtxt: ``), written first
        self.context = context
        super().__init__(f"{context}Triton would refuse to load model '{model}': {triton_message}")


def check_model(config: Any, versions: Iterable[int] | None = None) -> None:
    """Check one ``ModelConfig`` against Triton's per-model load rules.

    Parameters
    ----------
    config : tritonclient.grpc.model_config_pb2.ModelConfig
    versions : iterable of int, optional
        The version folders that will exist next to ``config.pbtxt``; checked against ``version_policy``.

    Raises
    ------
    TritonRuleError
        With Triton's message for the first rule broken.
    """
    name = config.name

    def fail(msg: str) -> None:
        raise TritonRuleError(name or "<unnamed>", msg)

    if not name:
        fail("model configuration must specify 'name'")
    is_ensemble = config.platform == ENSEMBLE
    if config.backend:
        if is_ensemble:
            fail(f"Ensemble model '{name}' must have platform type '{config.platform}' and empty backend type")
        inferred = _PLATFORM_BACKEND.get(config.platform)
        if config.backend in _KNOWN_BACKENDS and config.platform and inferred != config.backend:
            fail(f"unexpected 'platform' and 'backend' pair, got:{config.platform}, {config.backend}")
    elif not config.platform:
        fail(f"must specify 'platform' or 'backend' for '{name}'")
    if config.max_batch_size < 0:
        fail(f"'max_batch_size' must be non-negative value for {name}")
    _check_io(config, fail)
    _check_dynamic_batching(config, fail)
    if config.HasField("sequence_batching") and config.sequence_batching.HasField("oldest"):
        for size in config.sequence_batching.oldest.preferred_batch_size:
            if size <= 0:
                fail(f"sequence batching preferred batch size must be positive for {name}")
            if size > config.max_batch_size:
                fail(f"sequence batching preferred batch size must be <= max batch size for {name}")
    if config.HasField("ensemble_scheduling"):
        if not is_ensemble:
            fail(f"ensemble scheduling cannot be set for model '{name}' whose platform is not {ENSEMBLE}")
        _check_ensemble_shape(config, fail)
    elif is_ensemble:
        fail(f"ensemble scheduling must be set for ensemble {name} whose platform is {ENSEMBLE}")
    else:
        _check_instance_groups(config, fail)
    _check_warmup(config, fail)
    if versions is not None:
        _check_versions(config, set(versions), fail)


def _check_io(config: Any, fail) -> None:
    for what, tensors in (("input", config.input), ("output", config.output)):
        for io in tensors:
            prefix = f"model {what} "
            if not io.name:
                fail(f"{prefix}must specify 'name' for {config.name}")
            if io.data_type == 0:  # TYPE_INVALID
                fail(f"{prefix}'{io.name}' must specify 'data_type' for {config.name}")
            if len(io.dims) == 0:
                fail(f"{prefix}'{io.name}' must specify 'dims' for {config.name}")
            if any(d < 1 and d != -1 for d in io.dims):
                fail(f"{prefix}'{io.name}' dimension must be integer >= 1, or -1 to indicate a variable-size "
                     f"dimension for {config.name}")


def _check_dynamic_batching(config: Any, fail) -> None:
    if not config.HasField("dynamic_batching"):
        return
    db = config.dynamic_batching
    for size in db.preferred_batch_size:
        if size <= 0:
            fail(f"dynamic batching preferred size must be positive for {config.name}")
        if size > config.max_batch_size:
            fail(f"dynamic batching preferred size must be <= max batch size for {config.name}")
    levels = db.priority_levels
    if levels != 0:
        if db.default_priority_level == 0 or db.default_priority_level > levels:
            fail(f"default priority level must be in range [1, {levels}] for {config.name}")
        for level in db.priority_queue_policy:
            if level == 0 or level > levels:
                fail(f"priority queue policy must have priority level in range [1, {levels}] for {config.name}")
    if db.preserve_ordering:
        if levels > 1:
            fail(f"Only one priority level is allowed when 'preserve_ordering' is true for {config.name}")
        policies = [db.default_queue_policy, *db.priority_queue_policy.values()]
        for policy in policies:
            if policy.default_timeout_microseconds != 0 and policy.timeout_action == policy.DELAY:
                fail(f"Queue policy can not have DELAY as timeout action when 'preserve_ordering' is true for "
                     f"{config.name}")


def _check_instance_groups(config: Any, fail) -> None:
    for i, group in enumerate(config.instance_group):
        gname = group.name or f"{config.name}_{i}"
        kind = mc.ModelInstanceGroup.Kind.Name(group.kind)
        if kind in ("KIND_CPU", "KIND_MODEL") and len(group.gpus) > 0:
            fail(f"instance group {gname} of model {config.name} has kind {kind} but specifies one or more GPUs")
        if kind == "KIND_GPU":
            for gpu in group.gpus:
                if gpu < 0:
                    fail(f"instance group {gname} of model {config.name} specifies invalid or unsupported gpu id "
                         f"{gpu}")
        if config.platform != "tensorrt_plan" and len(group.profile) > 0:
            fail(f"instance group {gname} of model {config.name} and platform {config.platform}specifies profile "
                 "field which is only supported for TensorRT models")


def _check_warmup(config: Any, fail) -> None:
    """Triton runs each warm-up sample on every instance at load time (messages seen on Triton 2.51)."""
    first = config.instance_group[0].name if len(config.instance_group) and config.instance_group[0].name else \
        f"{config.name}_0"
    required = [io.name for io in config.input if not io.optional]
    known = {io.name for io in config.input}
    for warmup in config.model_warmup:
        if warmup.batch_size > max(config.max_batch_size, 1):
            fail(f"failed to run warmup sample '{warmup.name}': batch size {warmup.batch_size} for '{first}_0', "
                 f"max allowed is {config.max_batch_size}")
        given = [key for key in warmup.inputs if key in known]
        missing = [name for name in required if name not in warmup.inputs]
        if missing:
            fail(f"expected {len(required)} inputs but got {len(given)} inputs for model '{config.name}'. Got "
                 f"input(s) {given}, but missing required input(s) {missing}. Please provide all required input(s).")
        for key in warmup.inputs:
            if key not in known:
                fail(f"unexpected inference input '{key}', allowed inputs are: {', '.join(sorted(known))}")


def _check_versions(config: Any, versions: set[int], fail) -> None:
    policy = config.version_policy
    choice = policy.WhichOneof("policy_choice") if config.HasField("version_policy") else None
    if choice == "specific":
        available = versions & set(policy.specific.versions)
    else:
        available = versions
    if not available:
        fail(f"at least one version must be available under the version policy of model '{config.name}'")


def _check_ensemble_shape(config: Any, fail) -> None:
    """``ValidateEnsembleSchedulingConfig``: no instances/optimisation/warm-up, complete steps, connected graph."""
    name = config.name
    if len(config.instance_group) != 0:
        fail(f"instance group should not be specified for ensemble '{name}'")
    if config.HasField("optimization"):
        fail(f"optimization should not be specified for ensemble '{name}'")
    if len(config.model_warmup) != 0:
        fail(f"model_warmup can not be specified for ensemble '{name}'")
    steps = config.ensemble_scheduling.step
    if len(steps) == 0:
        fail(f"must specify 'step' for ensemble '{name}'")
    # tensor -> (is written by a step, tensors it depends on, tensors depending on it)
    written: dict[str, bool] = {}
    prev: dict[str, list[str]] = {}
    nxt: dict[str, list[str]] = {}
    for idx, step in enumerate(steps):
        if not step.model_name:
            fail(f"must specify 'model_name' in step {idx} of ensemble '{name}'")
        if len(step.input_map) == 0:
            fail(f"must specify 'input_map' in step {idx} of ensemble '{name}'")
        if len(step.output_map) == 0:
            fail(f"must specify 'output_map' in step {idx} of ensemble '{name}'")
        outs = []
        for tensor in step.output_map.values():
            if written.get(tensor):
                fail(f"ensemble tensor '{tensor}' can appear in an output map only once for ensemble '{name}' "
                     f"step {idx}")
            written[tensor] = True
            outs.append(tensor)
        for tensor in step.input_map.values():
            written.setdefault(tensor, False)
            for out in outs:
                prev.setdefault(out, []).append(tensor)
                nxt.setdefault(tensor, []).append(out)
    ready: set[str] = set()
    queue = []
    for io in config.input:
        if io.name not in written:
            fail(f"ensemble input '{io.name}' for ensemble {name}' is not used")
        ready.add(io.name)
        queue.append(io.name)
    while queue:
        node = queue.pop(0)
        for out in nxt.get(node, []):
            if out not in ready and all(p in ready for p in prev.get(out, [])):
                ready.add(out)
                queue.append(out)
    outputs = set()
    for io in config.output:
        if io.name not in written:
            fail(f"ensemble output '{io.name}' for ensemble {name}' is not used")
        if io.name not in ready:
            msg = f"output '{io.name}' for ensemble '{name}' is not written"
            source = _not_ready_source(io.name, prev, ready)
            if source != io.name:
                msg += f": at least one of its depending tensors, '{source}', is not connected"
            fail(msg)
        outputs.add(io.name)
    for tensor in written:
        if tensor in outputs:
            continue
        if tensor not in ready or not nxt.get(tensor):
            fail(f"ensemble tensor '{tensor}' is unused in ensemble '{name}'")


def _not_ready_source(tensor: str, prev: Mapping[str, list[str]], ready: set[str]) -> str:
    seen: set[str] = set()
    last = tensor
    nodes = prev.get(tensor, [])
    while nodes:
        following: list[str] = []
        for node in nodes:
            if node not in ready and node not in seen:
                seen.add(node)
                last = node
                following = prev.get(node, [])
                break
        nodes = following
    return last


def check_ensemble(config: Any, members: Mapping[str, Any]) -> None:
    """``ValidateEnsembleConfig``: each step's model exists, batch sizes fit, tensors agree in type and shape.

    Parameters
    ----------
    config : ModelConfig
        The ensemble.
    members : mapping
        Model name -> ModelConfig of every model in the same repository.
    """
    name = config.name

    def fail(msg: str) -> None:
        raise TritonRuleError(name, msg)

    batching = config.max_batch_size > 0
    # tensor -> (model, batching, data_type, dims)
    tensors: dict[str, tuple[str, bool, int, tuple[int, ...]]] = {}
    for io in list(config.input) + list(config.output):
        tensors[io.name] = (name, batching, io.data_type, tuple(io.dims))

    def consistent(tensor: str, model: str, mb: bool, dtype: int, dims: tuple[int, ...]) -> None:
        if tensor not in tensors:
            tensors[tensor] = (model, mb, dtype, dims)
            return
        lm, lb, ldt, ldims = tensors[tensor]
        where = f"in ensemble {name}, ensemble tensor {tensor}: "
        if ldt != dtype:
            fail(f"{where}inconsistent data type: {mc.DataType.Name(ldt)} is inferred from model {lm} while "
                 f"{mc.DataType.Name(dtype)} is inferred from model {model}")
        lfull = ((-1,) if lb else ()) + ldims
        rfull = ((-1,) if mb else ()) + dims
        if not (_dims_match(ldims, dims) or _dims_match(lfull, rfull)):
            fail(f"{where}inconsistent shape: {_dims_str(lfull)} is inferred from model {lm} while "
                 f"{_dims_str(rfull)} is inferred from model {model}")

    for step in config.ensemble_scheduling.step:
        member = members.get(step.model_name)
        if member is None:
            fail(f"ensemble {name} contains models that are not available or ambiguous: {step.model_name}")
        if member.max_batch_size != 0 and member.max_batch_size < config.max_batch_size:
            fail(f"ensemble {name} allows maximum batch size {config.max_batch_size}, but it contains model "
                 f"{step.model_name} which only allows maximum batch size to be {member.max_batch_size}")
        mb = member.max_batch_size > 0
        inputs = {io.name: io for io in member.input}
        for model_input, tensor in step.input_map.items():
            if model_input not in inputs:
                fail(f"in ensemble {name}, ensemble tensor {tensor} is mapping to non-existing input "
                     f"{model_input} in model {step.model_name}")
        for io in member.input:
            if io.name not in step.input_map:
                if io.optional:
                    continue
                fail(f"in ensemble {name}, input {io.name} in model {step.model_name} is not mapped to any "
                     "ensemble tensors")
            consistent(step.input_map[io.name], step.model_name, mb, io.data_type, tuple(io.dims))
        outputs = {io.name: io for io in member.output}
        for model_output, tensor in step.output_map.items():
            io = outputs.get(model_output)
            if io is None:
                fail(f"in ensemble {name}, ensemble tensor {tensor} is mapped from non-existing output "
                     f"{model_output} in model {step.model_name}")
            consistent(tensor, step.model_name, mb, io.data_type, tuple(io.dims))


def _dims_match(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b))


def _dims_str(dims: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def check_repository(configs: Mapping[str, Any], versions: Mapping[str, Iterable[int]] | None = None) -> None:
    """Check every model of one repository, then every ensemble against its members.

    Parameters
    ----------
    configs : mapping
        Folder name -> ModelConfig.
    versions : mapping, optional
        Folder name -> version folders that will be written.
    """
    for folder, config in configs.items():
        if config.name != folder:
            raise TritonRuleError(config.name or folder, f"model name '{config.name}' does not match its "
                                  f"directory '{folder}' (Triton names a model by its directory)")
        check_model(config, None if versions is None else versions.get(folder, ()))
    for config in configs.values():
        if config.platform == ENSEMBLE:
            check_ensemble(config, configs)
