"""Reading problem files as users write them: YAML (1.2 numbers, no duplicate keys) or JSON (as JSON).

* Plain block-style YAML (what problem files are) is read by :mod:`servopt.yaml_subset`, about 10x faster than
  PyYAML; anything else by the C YAML parser (``yaml.CSafeLoader``) when PyYAML has it, else the pure-Python one:
  the same results, the C one about 3x faster on large files.
* Numbers as YAML 1.2 writes them: ``1e3`` and ``1E-6`` are floats (PyYAML's YAML 1.1 rules read them as strings).
* A key that appears twice in one mapping is an error naming the key and its line (YAML keeps the last one
  silently; servopt's CSV reader already refuses duplicate columns).
* ``.json`` files are read as JSON: duplicate keys refused, and object keys that are whole numbers (``"1"``: JSON
  keys are always strings) read as integers, as the same key written in YAML would be (``batches: {1: ...}``).

>>> parse_yaml("a: 1e3\\nb: [1E-6, 2]", "p.yaml")
{'a': 1000.0, 'b': [1e-06, 2]}
>>> parse_json('{"batches": {"1": {"latency_ms": 1e-06}}}', "p.json")
{'batches': {1: {'latency_ms': 1e-06}}}
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from servopt.exceptions import ValidationError

__all__ = ["load_document", "parse_yaml", "parse_json"]

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """PyYAML's safe loader with YAML 1.2 floats and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: PyYAML reports it below
                continue
            if duplicate:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str | Path) -> Any:
    """The one YAML document of ``text`` (None when it is empty; several documents are an error)."""
    from servopt.yaml_subset import UNSUPPORTED, read_subset

    fast = read_subset(text, _scalar_loader())
    if fast is not UNSUPPORTED:
        return fast
    try:
        docs = [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except _DuplicateKey as exc:
        raise ValidationError(f"{source}: line {exc.line}: key {exc.key!r} appears twice in one mapping; "
                              "give each key once") from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"{source}: not valid YAML ({' '.join(str(exc).split())})") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp or number YAML cannot build
        raise ValidationError(f"{source}: a value cannot be read ({exc})") from None
    if len(docs) > 1:
        raise ValidationError(f"{source}: expected exactly one YAML document, found {len(docs)}")
    return docs[0] if docs else None


_SCALARS: list[Any] = []


def _scalar_loader() -> Any:
    """One loader instance whose resolver and constructors :func:`read_subset` uses for scalars."""
    if not _SCALARS:
        _SCALARS.append(_Loader(""))
    return _SCALARS[0]


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict[Any, Any] = {}
    for key, value in pairs:
        k: Any = int(key) if key.isdigit() and key.isascii() else key
        if k in out:
            raise _DuplicateKey(key, 0)
        out[k] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str, source: str | Path) -> Any:
    """The JSON value of ``text`` (duplicate keys refused, whole-number keys as integers)."""
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise ValidationError(f"{source}: key {exc.key!r} appears twice in one object; give each key once") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except ValueError as exc:
        raise ValidationError(f"{source}: not valid JSON ({exc})") from None


def load_document(path: str | Path) -> Any:
    """Read ``path`` as JSON (``.json``) or YAML (anything else); errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{path}: cannot read the file ({exc})") from None
    if path.suffix.lower() == ".json":
        return parse_json(text, path)
    return parse_yaml(text, path)
