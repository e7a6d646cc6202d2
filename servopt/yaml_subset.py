"""A fast reader for the plain block-style YAML that problem files are written in (PyYAML decides the rest).

Even with its C parser, PyYAML builds a Python event, node and two marks for every scalar and constructs the
document in Python: about 1 s for a 50-stage x 50-variant pipeline file (800 kB). Problem files use a small
part of YAML: block mappings and sequences, plain or simply quoted scalars, one-line flow mappings and sequences
(``1: {latency_ms: 77.2}``) and comments. :func:`read_subset` reads exactly that part line by line, about 10x
faster, and answers :data:`UNSUPPORTED` for anything else (anchors, tags, block scalars, multi-line scalars,
escapes, tabs, non-ASCII text, document markers, duplicate keys, any error), so that the caller parses the text with
PyYAML, which then gives the same answer or the error message it always gave.

Scalars are resolved and constructed by the loader passed in (servopt's: the YAML 1.2 core schema, see
:mod:`servopt.documents`), so ``yes``, ``010``, ``1e3``, ``0x10``, ``~`` or ``2024-01-01`` read exactly as PyYAML
reads them with that loader.

>>> import yaml
>>> read_subset("a: 1\\nb: [x, 2.5]\\nc:\\n- {d: on}\\n", yaml.SafeLoader(""))
{'a': 1, 'b': ['x', 2.5], 'c': [{'d': True}]}
>>> read_subset("a: &x 1\\n", yaml.SafeLoader("")) is UNSUPPORTED
True
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["read_subset", "UNSUPPORTED"]

#: the answer for text outside the subset (the caller parses it with PyYAML)
UNSUPPORTED: Any = object()

#: a key: a plain scalar without spaces, colons, quotes or YAML indicators, followed by ':' and a space or the end
_KEY = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.+/-]*):(?: +|$)")
#: characters that start something other than a plain scalar (flow, alias, anchor, tag, block scalar, quotes ...)
_INDICATORS = frozenset("?:,[]{}#&*!|>'\"%@`")
#: text PyYAML reads differently or refuses: control characters, tabs, carriage returns (ASCII only; the rest
#: of Unicode, with its extra line breaks, is left to PyYAML)
_UNSAFE = re.compile(r"[^\n\x20-\x7e]")
#: a key inside a flow mapping, and a plain scalar inside a flow collection (no colons, hashes or quotes at all)
_FLOW_KEY = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.+/-]*): +")
_FLOW_PLAIN = re.compile(r"[^ ,\[\]{}:#'\"][^,\[\]{}:#'\"]*")


#: the commonest flow collection, one pair of plain scalars (``{latency_ms: 12.5}``), read with one match
_ONE_PAIR = re.compile(r"\{ *([A-Za-z0-9_][A-Za-z0-9_.+/-]*): +([^ ,\[\]{}:#'\"][^,\[\]{}:#'\"]*?) *\}")


#: a plain decimal such as ``-12.50``: PyYAML reads it as ``float(text)``
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")


def _skip(s: str, i: int) -> int:
    while s[i] == " ":
        i += 1
    return i


_MISSING: Any = object()


class _Unsupported(Exception):
    """The text leaves the subset."""


def read_subset(text: str, loader: Any) -> Any:
    """The document in ``text``, or :data:`UNSUPPORTED` when it is not plain block-style YAML of one mapping.

    Parameters
    ----------
    text : str
        The file's text.
    loader : yaml loader instance
        Resolves and constructs scalars (``loader.resolve`` and ``loader.yaml_constructors``).
    """
    if _UNSAFE.search(text):
        return UNSUPPORTED
    try:
        return _Reader(text, loader).document()
    except _Unsupported:
        return UNSUPPORTED
    except (ValueError, TypeError, OverflowError, KeyError, IndexError, RecursionError):
        # a scalar PyYAML refuses, a line that ends too early, ...: PyYAML says what it is
        return UNSUPPORTED


class _Reader:
    def __init__(self, text: str, loader: Any) -> None:
        import yaml

        self.loader = loader
        self.node = yaml.ScalarNode
        self.cache: dict[str, Any] = {}
        self.keys: dict[str, Any] = {}  # key texts that matched _KEY -> their value
        indents: list[int] = []
        contents: list[str] = []
        comments = "#" in text
        for raw in text.split("\n"):
            body = raw.lstrip(" ")
            if not body:
                continue
            indent = len(raw) - len(body)
            if comments and "#" in body:
                if body[0] == "#":
                    continue
                if "'" in body or '"' in body:
                    raise _Unsupported
                cut = body.find(" #")
                if cut >= 0:
                    body = body[:cut]
            if body[-1] == " ":
                body = body.rstrip(" ")
            if indent == 0 and (body.startswith("---") or body.startswith("...") or body[0] == "%"):
                raise _Unsupported  # document markers and directives
            indents.append(indent)
            contents.append(body)
        self.indents = indents
        self.contents = contents
        self.n = len(contents)

    # ---------------------------------------------------------------------------------------------- structure
    def document(self) -> Any:
        if self.n == 0 or self.indents[0] != 0 or not _KEY.match(self.contents[0]):
            raise _Unsupported  # empty, a scalar or a sequence at the top: PyYAML says what it is
        value, i = self.mapping(0, 0)
        if i != self.n:
            raise _Unsupported  # a line indented inconsistently (PyYAML names it)
        return value

    def block(self, i: int, indent: int) -> tuple[Any, int]:
        body = self.contents[i]
        if body == "-" or body.startswith("- "):
            return self.sequence(i, indent)
        return self.mapping(i, indent)

    def mapping(self, i: int, indent: int) -> tuple[dict, int]:
        out: dict[Any, Any] = {}
        indents, contents, n, cache, keys = self.indents, self.contents, self.n, self.cache, self.keys
        while i < n and indents[i] == indent:
            body = contents[i]
            # a key text seen before (keys repeat: latency_ms, name, 1, 2, 4 ...) needs no regular expression:
            # no key holds a colon, so the first colon ends it
            colon = body.find(":")
            key = keys.get(body[:colon], _MISSING) if colon > 0 else _MISSING
            if key is not _MISSING and (colon + 1 == len(body) or body[colon + 1] == " "):
                rest = body[colon + 1:].lstrip(" ")
            else:
                m = _KEY.match(body)
                if m is None:
                    raise _Unsupported
                key = keys[m.group(1)] = self.scalar(m.group(1))
                rest = body[m.end():]
            if key in out:
                raise _Unsupported  # PyYAML's path reports the duplicate with its line
            i += 1
            if rest:
                # a text seen before as a plain scalar (only plain scalars are cached) has the same value
                value = cache.get(rest, _MISSING)
                if value is _MISSING:
                    value = float(rest) if _DECIMAL.fullmatch(rest) else self.inline(rest)
                out[key] = value
                if i < n and indents[i] > indent:
                    raise _Unsupported  # a multi-line scalar or a nested block after a value
            elif i < n and indents[i] > indent:
                out[key], i = self.block(i, indents[i])
            elif i < n and indents[i] == indent and (contents[i] == "-" or contents[i].startswith("- ")):
                out[key], i = self.sequence(i, indent)
            else:
                out[key] = None
        return out, i

    def sequence(self, i: int, indent: int) -> tuple[list, int]:
        out: list[Any] = []
        indents, contents, n = self.indents, self.contents, self.n
        while i < n and indents[i] == indent and (contents[i] == "-" or contents[i].startswith("- ")):
            body = contents[i]
            rest = body[1:].lstrip(" ")
            if not rest:
                i += 1
                if i < n and indents[i] > indent:
                    value, i = self.block(i, indents[i])
                    out.append(value)
                else:
                    out.append(None)
            elif rest == "-" or rest.startswith("- "):
                raise _Unsupported  # a sequence inside a sequence on one line
            elif _KEY.match(rest):
                # "- key: value": a mapping whose keys line up with this first key
                inner = indent + len(body) - len(rest)
                indents[i], contents[i] = inner, rest
                value, i = self.mapping(i, inner)
                out.append(value)
            else:
                out.append(self.inline(rest))
                i += 1
                if i < n and indents[i] > indent:
                    raise _Unsupported
        return out, i

    # ------------------------------------------------------------------------------------------------ values
    def inline(self, text: str) -> Any:
        first = text[0]
        if first == "{" or first == "[":
            return self.flow(text)
        if first == '"' or first == "'":
            if len(text) < 2 or text[-1] != first or first in text[1:-1] or "\\" in text:
                raise _Unsupported  # escapes, doubled quotes, text after the closing quote
            return text[1:-1]
        return self.plain(text)

    def plain(self, text: str) -> Any:
        first = text[0]
        if first in _INDICATORS or (first == "-" and (len(text) == 1 or text[1] == " ")):
            raise _Unsupported
        if ": " in text or text[-1] == ":":
            raise _Unsupported  # PyYAML refuses "a: b: c"
        return self.scalar(text)

    def flow(self, text: str) -> Any:
        m = _ONE_PAIR.fullmatch(text)
        if m is not None:
            return {self.scalar(m.group(1)): self.plain(m.group(2))}
        value, i = self.flow_value(text, 0)
        if i != len(text):
            raise _Unsupported  # text after the closing bracket
        return value

    def flow_value(self, s: str, i: int) -> tuple[Any, int]:
        """The flow collection or plain scalar at ``s[i]`` (no spaces before it) and the index after it."""
        first = s[i]
        if first == "{" or first == "[":
            close = "}" if first == "{" else "]"
            out: Any = {} if first == "{" else []
            i = _skip(s, i + 1)
            if s[i] == close:
                return out, i + 1
            while True:
                if first == "{":
                    m = _FLOW_KEY.match(s, i)
                    if m is None:
                        raise _Unsupported  # "{a}", "{a:1}", quoted or complex keys
                    key = self.scalar(m.group(1))
                    if key in out:
                        raise _Unsupported
                    out[key], i = self.flow_value(s, m.end())
                else:
                    item, i = self.flow_value(s, i)
                    out.append(item)
                i = _skip(s, i)
                if s[i] == close:
                    return out, i + 1
                if s[i] != ",":
                    raise _Unsupported  # "[a: 1]" (a one-pair mapping), a missing comma
                i = _skip(s, i + 1)
                if s[i] == close:
                    raise _Unsupported  # a trailing comma
        m = _FLOW_PLAIN.match(s, i)
        if m is None:
            raise _Unsupported
        return self.plain(m.group().rstrip(" ")), m.end()

    def scalar(self, text: str) -> Any:
        """``text`` as PyYAML reads a plain scalar (resolved tag, then its constructor); cached per text."""
        try:
            return self.cache[text]
        except KeyError:
            pass
        if _DECIMAL.fullmatch(text):  # what PyYAML's float resolver and constructor give, without them
            value = self.cache[text] = float(text)
            return value
        loader = self.loader
        tag = loader.resolve(self.node, text, (True, False))
        constructor = loader.yaml_constructors.get(tag)
        if constructor is None:
            raise _Unsupported
        value = constructor(loader, self.node(tag, text))
        if isinstance(value, (list, dict, set)):  # scalars only; never shared mutable values
            raise _Unsupported
        self.cache[text] = value
        return value
