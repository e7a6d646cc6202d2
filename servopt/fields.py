"""One set of validators for the numbers, integers and names every file reader checks.

:class:`Fields` reads one mapping of a file (a problem file, a triton section, ...) and gives uniform, precise
errors ("<file>: key 'gpus[1].max_count': expected a positive integer, got -3"); :func:`check_number` and
:func:`check_int` check one value and build the error with a caller's function, so readers that are not about
mappings (constructors, CSV cells) say the same thing in the same words.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError

__all__ = ["MODEL_FORMATS", "model_file", "MAX_EXACT_INT", "Fields", "check_number", "check_int", "as_number", "as_int",
           "is_number", "show"]

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
            raise ValidationError(f"{self.source}: {self._where('')}expected a mapping, got {show(data)}")
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
            raise self.error(key, f"expected a non-empty string, got {show(value)}")
        if choices is not None:
            choices = list(choices)
            if value not in choices:
                raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def bool(self, key: str, default: Any = ...) -> Any:
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {show(value)}")
        return value

    def list(self, key: str, default: Any = ..., *, nonempty: bool = True) -> Any:
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {show(value)}")
        if nonempty and not value:
            raise self.error(key, "expected a non-empty list")
        return value

    def mapping(self, key: str, default: Any = ...) -> Any:
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a mapping, got {show(value)}")
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


def show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


#: the largest integer magnitude a problem file may hold: every solver works in doubles, exact up to 2^53
MAX_EXACT_INT = 2**53


def check_number(value: Any, err, *, positive: bool = False, minimum: float | None = None,
                 maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise err(f"expected a number, got {show(value)}")
    try:
        value = float(value)
    except OverflowError:
        raise err(f"expected a finite number, got an integer of {len(str(abs(int(value))))} digits") from None
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
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (
        not isinstance(value, numbers.Integral) and not float(value).is_integer()
    ):
        raise err(f"expected an integer, got {show(value)}")
    value = int(value)
    if abs(value) > MAX_EXACT_INT:
        raise err(f"expected an integer of magnitude at most 2^53 = {MAX_EXACT_INT:,} (the solvers compute in double "
                  f"precision, where larger integers are not exact), got {value}")
    if minimum is not None and value < minimum:
        raise err(f"expected an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise err(f"expected an integer <= {maximum}, got {value}")
    return value


def is_number(value: Any) -> bool:
    """True for a finite int or float (numpy scalars included), False for bools and everything else.

    >>> is_number(3), is_number(2.5), is_number(True), is_number(float("nan")), is_number("1")
    (True, True, False, False, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def as_number(value: Any, what: str, *, positive: bool = False, minimum: float | None = None,
              maximum: float | None = None) -> float:
    """:func:`check_number` for a constructor argument: the error starts with ``what``.

    >>> as_number(2, "workload_rps", positive=True)
    2.0
    >>> as_number(-1, "workload_rps", positive=True)
    Traceback (most recent call last):
    servopt.exceptions.ValidationError: workload_rps: expected a number > 0, got -1
    """
    return check_number(value, lambda what_: ValidationError(f"{what}: {what_}"), positive=positive,
                        minimum=minimum, maximum=maximum)


def as_int(value: Any, what: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """:func:`check_int` for a constructor argument: the error starts with ``what``."""
    return check_int(value, lambda what_: ValidationError(f"{what}: {what_}"), minimum=minimum, maximum=maximum)


#: model-file suffix -> the Triton backend that loads it (``model_file:`` in problem files)
MODEL_FORMATS = {".onnx": "onnxruntime", ".plan": "tensorrt_plan", ".engine": "tensorrt_plan",
                 ".pt": "pytorch_libtorch", ".pth": "pytorch_libtorch", ".torchscript": "pytorch_libtorch"}


def model_file(f: Any, key: str, base: Path) -> Path | None:
    """Read and check the ``model_file`` key of a problem-file mapping (``f`` is a :class:`servopt.fields.Fields`).

    The path is relative to the problem file (``base`` is its folder). A missing, unreadable or unknown-format file
    is an error naming the file, key and value, raised while the problem is read, so before solving.
    """
    value = f.str(key, None)
    if value is None:
        return None
    path = Path(value)
    path = path if path.is_absolute() else base / path
    if path.suffix.lower() not in MODEL_FORMATS:
        raise f.error(key, f"{value!r}: unknown model format {path.suffix or '(no suffix)'!r}; expected a file "
                           f"ending in {', '.join(MODEL_FORMATS)}")
    if path.is_dir():
        raise f.error(key, f"{value!r}: {path} is a folder; give the model file")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        reason = "does not exist" if not path.exists() else f"cannot be read ({exc.strerror or exc})"
        raise f.error(key, f"{value!r}: {path} {reason} (paths are relative to the problem file)") from None
    return path
