"""Problem files: YAML → validated problem objects.

A file holds one YAML document with ``problem: <kind>``. Each formulation module provides
``from_mapping(data: dict, source: Path) -> Problem``; :class:`Fields` gives them uniform, precise errors
("<file>: key 'gpus[1].max_count': expected a positive integer, got -3").
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError

__all__ = ["PROBLEM_KINDS", "load_problem", "problem_from_mapping", "Fields"]

#: problem kind -> "module:function" taking (mapping, source path)
PROBLEM_KINDS: dict[str, str] = {
    "min_gpus": "servopt.formulations.min_gpus:from_mapping",
    "max_throughput": "servopt.formulations.max_throughput:from_mapping",
    "variant_selection": "servopt.formulations.variant_selection:from_mapping",
    "pipeline": "servopt.formulations.pipeline:from_mapping",
}


def load_problem(path: str | Path) -> Any:
    """Read and validate the problem file at ``path``."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValidationError(f"{path}: no such problem file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{path}: cannot read the problem file ({exc})") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ValidationError(f"{path}: not valid YAML ({exc})") from None
    if len(docs) != 1:
        raise ValidationError(
            f"{path}: expected exactly one YAML document holding one problem, found {len(docs)}"
        )
    return problem_from_mapping(docs[0], path)


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


class Fields:
    """Typed access to one mapping of a problem file, with errors naming the file and the key path.

    Call :meth:`done` after reading to reject keys nobody asked for.

    >>> f = Fields({"images": 10, "deadline_s": 1.5}, "p.yaml")
    >>> f.int("images", minimum=1), f.number("deadline_s", positive=True)
    (10, 1.5)
    >>> f.done()
    """

    def __init__(self, data: Any, source: str | Path, prefix: str = "") -> None:
        self.source = str(source)
        self.prefix = prefix
        if not isinstance(data, Mapping):
            raise ValidationError(f"{self.source}: {self._where('')}expected a mapping, got {_show(data)}")
        self.data = dict(data)
        self.used: set[str] = set()

    def _where(self, key: str) -> str:
        path = f"{self.prefix}.{key}" if self.prefix and key else (self.prefix or key)
        return f"key '{path}': " if path else ""

    def error(self, key: str, what: str) -> ValidationError:
        return ValidationError(f"{self.source}: {self._where(key)}{what}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = ..., required: bool | None = None) -> Any:
        self.used.add(key)
        if key in self.data:
            return self.data[key]
        if default is ...:
            raise self.error(key, "missing (required)")
        return default

    def number(self, key: str, default: Any = ..., *, positive: bool = False, minimum: float | None = None,
               maximum: float | None = None) -> Any:
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        return check_number(value, lambda what: self.error(key, what), positive=positive, minimum=minimum,
                            maximum=maximum)

    def int(self, key: str, default: Any = ..., *, minimum: int | None = None, maximum: int | None = None) -> Any:
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        return check_int(value, lambda what: self.error(key, what), minimum=minimum, maximum=maximum)

    def str(self, key: str, default: Any = ..., *, choices: Iterable[str] | None = None) -> Any:
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.error(key, f"expected a non-empty string, got {_show(value)}")
        if choices is not None:
            choices = list(choices)
            if value not in choices:
                raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def list(self, key: str, default: Any = ..., *, nonempty: bool = True) -> Any:
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {_show(value)}")
        if nonempty and not value:
            raise self.error(key, "expected a non-empty list")
        return value

    def mapping(self, key: str, default: Any = ...) -> Any:
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a mapping, got {_show(value)}")
        return value

    def sub(self, key: str | int, data: Any) -> Fields:
        """Fields for a nested mapping, e.g. ``gpus[0]``."""
        label = f"{self.prefix}[{key}]" if isinstance(key, int) else (f"{self.prefix}.{key}" if self.prefix else key)
        return Fields(data, self.source, label)

    def done(self, ignore: Iterable[str] = ()) -> None:
        extra = sorted(set(map(str, self.data)) - self.used - set(ignore))
        if extra:
            allowed = ", ".join(sorted(self.used | set(ignore)))
            raise self.error(extra[0], f"unknown key (allowed here: {allowed})")


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def check_number(value: Any, err, *, positive: bool = False, minimum: float | None = None,
                 maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise err(f"expected a number, got {_show(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise err(f"expected a finite number, got {value}")
    if positive and value <= 0:
        raise err(f"expected a number > 0, got {value:g}")
    if minimum is not None and value < minimum:
        raise err(f"expected a number >= {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise err(f"expected a number <= {maximum:g}, got {value:g}")
    return value


def check_int(value: Any, err, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise err(f"expected an integer, got {_show(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise err(f"expected an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise err(f"expected an integer <= {maximum}, got {value}")
    return value
