"""The registry of problem kinds, and problem files: YAML → validated problem objects.

A problem file holds one YAML document with ``problem: <kind>``. Each kind's package provides
``from_mapping(data: dict, source: Path) -> Problem`` in its ``files`` module; :data:`PROBLEM_KINDS` names it.
Adding a problem kind means adding its package under ``servopt/formulations/`` and one line here.

>>> sorted(PROBLEM_KINDS)
['fleet', 'max_throughput', 'min_gpus', 'pipeline', 'variant_selection']
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError

__all__ = ["PROBLEM_KINDS", "load_problem", "read_problem_document", "kind_module", "problem_from_mapping"]

#: problem kind -> "module:function" taking (mapping, source path); imported on first use
PROBLEM_KINDS: dict[str, str] = {
    "min_gpus": "servopt.formulations.gpu.files:min_gpus_from_mapping",
    "max_throughput": "servopt.formulations.gpu.files:max_throughput_from_mapping",
    "variant_selection": "servopt.formulations.variant_selection.files:from_mapping",
    "pipeline": "servopt.formulations.pipeline.files:from_mapping",
    "fleet": "servopt.formulations.fleet.files:from_mapping",
}


def load_problem(path: str | Path) -> Any:
    """Read and validate the problem file at ``path`` (YAML, or JSON when it ends in ``.json``)."""
    return problem_from_mapping(read_problem_document(path), Path(path))


def read_problem_document(path: str | Path) -> Any:
    """The parsed document of the problem file at ``path``, not yet validated (see :func:`problem_from_mapping`)."""
    from servopt.documents import load_document

    path = Path(path)
    try:
        data = load_document(path)
    except ValidationError as exc:
        if "no such file" in str(exc):
            raise ValidationError(f"{path}: no such problem file") from None
        raise
    if data is None:
        raise ValidationError(f"{path}: expected exactly one YAML document holding one problem, found 0")
    return data


def kind_module(data: Any) -> str | None:
    """The module that validates ``data``'s problem kind (None for an unknown kind: validation reports it)."""
    target = PROBLEM_KINDS.get(data.get("problem")) if isinstance(data, Mapping) else None
    return None if target is None else target.split(":")[0]


def problem_from_mapping(data: Any, source: str | Path = "<problem>") -> Any:
    """Validate a problem given as a mapping (the parsed YAML document)."""
    source = Path(source)
    if not isinstance(data, Mapping):
        raise ValidationError(f"{source}: a problem file must be a mapping of keys, got {type(data).__name__}")
    kind = data.get("problem")
    if kind not in PROBLEM_KINDS:
        raise ValidationError(
            f"{source}: key 'problem': expected one of {', '.join(PROBLEM_KINDS)}, got {kind!r}"
        )
    module, func = PROBLEM_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), func)(dict(data), source)
