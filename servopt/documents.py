"""Reading problem files as users write them: YAML (1.2 numbers, no duplicate keys) or JSON (as JSON).

* Plain block-style YAML (what problem files are) is read by :mod:`servopt.yaml_subset`, about 10x faster than
  PyYAML; anything else by the C YAML parser (``yaml.CSafeLoader``) when PyYAML has it, else the pure-Python one:
  the same results, the C one about 3x faster on large files.
* Scalars as the YAML 1.2 core schema reads them (PyYAML implements YAML 1.1): ``1e3``, ``1E-6`` and ``.5e2``
  are floats, ``010`` is 10 and ``0o17`` 15; ``12:30``, ``yes``, ``on``, ``0b101`` and ``2024-01-02`` stay text (YAML
  1.1 reads 750, True, True, 5 and a date), so a value meant as a number is read as the number written or refused,
  never read as another one. ``_`` between decimal digits groups them (``10_000_000``), as in YAML 1.1 and Python.
* A key that appears twice in one mapping is an error naming the key and its line (YAML keeps the last one
  silently; servopt's CSV reader already refuses duplicate columns).
* ``.json`` files are read as JSON: duplicate keys refused, and object keys that are whole numbers (``"1"``: JSON
  keys are always strings) read as integers, as the same key written in YAML would be (``batches: {1: ...}``).

>>> parse_yaml("a: 1e3\\nb: [1E-6, 2, 010, 0o17]\\nc: [yes, 12:30, true]", "p.yaml")
{'a': 1000.0, 'b': [1e-06, 2, 10, 15], 'c': ['yes', '12:30', True]}
>>> parse_json('{"batches": {"1": {"latency_ms": 1e-06}}}', "p.json")
{'batches': {1: {'latency_ms': 1e-06}}}
"""

from __future__ import annotations

import json
import math
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
    """PyYAML's safe loader with the YAML 1.2 core schema's scalars and duplicate keys refused."""

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


# The YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution) instead of PyYAML's YAML 1.1 rules:
# null, booleans, integers and floats by the core schema's expressions, everything else a string. The merge key
# ``<<`` is kept (YAML 1.1, read by most YAML 1.2 tools). YAML 1.1's timestamps, sexagesimal numbers, yes/no/on/off,
# binary and ``=`` are text. One extension: a single ``_`` between decimal digits groups them (``10_000_000``, as
# in Python and YAML 1.1; the core schema reads it as text), which shipped examples use.
_CORE = "tag:yaml.org,2002:"
_DIGITS = r"[0-9](?:_?[0-9])*"
_Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in [
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("int", rf"[-+]?{_DIGITS}|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    ("float", rf"[-+]?(?:\.{_DIGITS}|{_DIGITS}(?:\.(?:{_DIGITS})?)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", list("-+.0123456789")),
    ("merge", r"<<", ["<"]),
]:
    _Loader.add_implicit_resolver(_CORE + _tag, re.compile(rf"^(?:{_pattern})$"), _first)


def _core_int(loader: Any, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)  # "010" is ten, as in YAML 1.2 (YAML 1.1: octal 8)


def _core_float(loader: Any, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node)
    special = text.lstrip("+-").lower()
    if special == ".inf":
        return -math.inf if text[0] == "-" else math.inf
    if special == ".nan":
        return math.nan
    return float(text)


_Loader.add_constructor(_CORE + "int", _core_int)
_Loader.add_constructor(_CORE + "float", _core_float)


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
