"""The ``ensemble`` model of a pipeline: stage models chained by their tensors, links checked.

Each input of stage k > 0 is fed by, in order: ``triton.models.<stage>.connect``; the previous stage's output of
the same name; the previous stage's only output when the stage has one input; the ensemble input of the same name;
the previous stage's only output when one input is left. Data types and shapes must agree (-1 matches any size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from servopt.exceptions import ValidationError
from servopt.triton.spec import TritonSpec

__all__ = ["ensemble_config"]


def _show(io: Any) -> str:
    return f"{mc.DataType.Name(io.data_type)} {list(io.dims)}"


def _compatible(a: Sequence[int], b: Sequence[int]) -> bool:
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b))


def ensemble_config(spec: TritonSpec, name: str, stages: list[Any], keys: Sequence[str]) -> Any:
    """An ensemble chaining ``stages`` (their configs; ``keys`` are the stage names), wired by tensor names as the
    module docstring says; an unfed input, or a link whose data type or shape differs, is an error naming both
    tensors and both stages."""
    cfg = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=min(s.max_batch_size for s in stages))
    cfg.input.extend(stages[0].input)
    cfg.version_policy.specific.versions.append(spec.version)
    ensemble_inputs = {io.name: io for io in stages[0].input}
    by_key = dict(zip(keys, range(len(stages))))
    # (stage index, input name) -> (producer stage index or None for an ensemble input, tensor name)
    feeds: dict[tuple[int, str], tuple[int | None, str]] = {}
    for k, stage in enumerate(stages):
        if k == 0:
            for io in stage.input:
                feeds[(0, io.name)] = (None, io.name)
            continue
        prev = stages[k - 1]
        prev_out = {o.name: o for o in prev.output}
        stage_spec = spec.models.get(keys[k])
        connect = dict(stage_spec.connect or {}) if stage_spec is not None else {}
        inputs = {io.name for io in stage.input}
        stray = sorted(set(connect) - inputs)
        if stray:
            raise ValidationError(
                f"{spec.source}: key 'triton.models.{keys[k]}.connect.{stray[0]}': stage {keys[k]!r} has no "
                f"input {stray[0]!r} (its inputs: {', '.join(sorted(inputs))})")
        left = []
        for io in stage.input:
            if io.name in connect:
                feeds[(k, io.name)] = _source(spec, keys, by_key, k, io.name, connect[io.name], stages,
                                              ensemble_inputs)
            elif io.name in prev_out:
                feeds[(k, io.name)] = (k - 1, io.name)
            elif len(stage.input) == 1 and len(prev.output) == 1:  # a plain chain
                feeds[(k, io.name)] = (k - 1, prev.output[0].name)
            elif io.name in ensemble_inputs:
                feeds[(k, io.name)] = (None, io.name)
            else:
                left.append(io.name)
        if left:
            if len(left) == 1 and len(prev.output) == 1:
                feeds[(k, left[0])] = (k - 1, prev.output[0].name)
            else:
                raise ValidationError(
                    f"{spec.source}: stage {keys[k]!r} input {left[0]!r} is fed by no tensor: the previous stage "
                    f"{keys[k - 1]!r} outputs {', '.join(prev_out) or 'nothing'}, the ensemble's inputs are "
                    f"{', '.join(ensemble_inputs)}; name them alike or give "
                    f"triton.models.{keys[k]}.connect: {{{left[0]}: <output>}}")
    # check types and shapes, then write the steps
    last = len(stages) - 1
    consumed: set[tuple[int, str]] = set()
    for (k, inp), (producer, tensor) in feeds.items():
        target = next(io for io in stages[k].input if io.name == inp)
        if producer is None:
            src, src_label = ensemble_inputs[tensor], f"input {tensor!r} of ensemble {name!r}"
        else:
            src = next(o for o in stages[producer].output if o.name == tensor)
            src_label = f"output {tensor!r} of stage {keys[producer]!r}"
            consumed.add((producer, tensor))
        if src.data_type != target.data_type or not _compatible(src.dims, target.dims):
            what = "data type" if src.data_type != target.data_type else "shape"
            raise ValidationError(
                f"{spec.source}: ensemble {name!r}: {src_label} ({_show(src)}) cannot feed input {inp!r} of "
                f"stage {keys[k]!r} ({_show(target)}): the {what} differs")
    for k, stage in enumerate(stages):
        step = cfg.ensemble_scheduling.step.add(model_name=stage.name, model_version=-1)
        for io in stage.input:
            producer, tensor = feeds[(k, io.name)]
            step.input_map[io.name] = tensor if producer is None else f"{stages[producer].name}_{tensor}"
        for io in stage.output:
            if k == last:
                step.output_map[io.name] = io.name
            elif (k, io.name) in consumed:
                step.output_map[io.name] = f"{stage.name}_{io.name}"
    cfg.output.extend(stages[-1].output)
    return cfg


def _source(spec: TritonSpec, keys: Sequence[str], by_key: Mapping[str, int], k: int, inp: str, value: str,
            stages: list[Any], ensemble_inputs: Mapping[str, Any]) -> tuple[int | None, str]:
    """The producer named by ``connect: {inp: value}`` of stage k."""
    where = f"{spec.source}: key 'triton.models.{keys[k]}.connect.{inp}'"
    stage_key, dot, tensor = value.rpartition(".")
    if dot and stage_key in by_key:
        producer = by_key[stage_key]
        if producer >= k:
            raise ValidationError(f"{where}: {value!r} is not an earlier stage's output")
    elif value in {o.name for o in stages[k - 1].output}:
        producer, tensor = k - 1, value
    elif value in ensemble_inputs:
        return None, value
    else:
        raise ValidationError(
            f"{where}: {value!r} is no output of stage {keys[k - 1]!r} "
            f"({', '.join(o.name for o in stages[k - 1].output)}), no '<stage>.<output>' of an earlier stage and no ensemble input ({', '.join(ensemble_inputs)})")
    if tensor not in {o.name for o in stages[producer].output}:
        raise ValidationError(f"{where}: stage {keys[producer]!r} has no output {tensor!r}")
    return producer, tensor
