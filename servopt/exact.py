"""Exact arithmetic for the plan checks every solve passes before it returns (no tolerance anywhere).

Solvers work in floating point with feasibility tolerances (SCIP, HiGHS and Gurobi accept a row that misses its
bound by about 1e-6 of its size), so a plan a solver calls optimal may break a constraint: 395 images short of
1.2e9 requested, say. servopt therefore re-checks every decoded plan with exact rational arithmetic
(:class:`fractions.Fraction`) before :func:`servopt.solve` returns it, and repairs or refuses what fails.

Numbers are taken as the decimals they print as: a float ``x`` counts as ``Fraction(repr(x))``, the shortest
decimal that reads back as ``x`` (``0.1`` is exactly one tenth, ``0.3 + 7 * 0.1`` is exactly ``1``). That is the
number a person wrote in a problem file, and the same rule everywhere makes "within the deadline" and "covers the
load" yes-or-no questions with no tolerance.

>>> dec(0.1) * 7 + dec(0.3) == 1
True
>>> dec(3), dec(2.5), dec(1e-06)
(Fraction(3, 1), Fraction(5, 2), Fraction(1, 1000000))
>>> ceil_div(dec(10.0), dec(2.5)), ceil_div(dec(10.0), dec(3.0))
(4, 4)
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any

from servopt.exceptions import ValidationError

__all__ = ["dec", "ceil_div", "floor_div", "decimals", "near", "plain", "BORDER_RTOL"]

#: floating-point comparisons closer than this (relative) are settled exactly; farther ones are certain in floats
BORDER_RTOL = 1e-6


def dec(value: Any) -> Fraction:
    """``value`` as an exact fraction: integers as they are, floats as the decimal they print as."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, bool):
        raise ValidationError(f"expected a number, got bool {value!r}")
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if not math.isfinite(x):
            raise ValidationError(f"expected a finite number, got {x!r}")
        return Fraction(repr(x))
    raise ValidationError(f"expected a number, got {type(value).__name__} {value!r}")


def ceil_div(a: Fraction, b: Fraction) -> int:
    """The least integer n with ``n * b >= a`` (``b > 0``)."""
    return -((-a) // b)


def floor_div(a: Fraction, b: Fraction) -> int:
    """The largest integer n with ``n * b <= a`` (``b > 0``)."""
    return int(a // b)


def decimals(value: Any) -> int:
    """How many decimal places ``value`` has when printed (``4.1`` -> 1, ``3`` -> 0, ``1e-06`` -> 6)."""
    return _power_of_ten(dec(value).denominator)


def _power_of_ten(denominator: int) -> int:
    """The least d with ``denominator`` dividing 10**d (every printed decimal has one)."""
    d = 0
    while (10 ** d) % denominator:
        d += 1
    return d


def near(a: float, b: float, rtol: float = BORDER_RTOL) -> bool:
    """Whether two floats are so close that their order must be settled exactly."""
    return abs(a - b) <= rtol * max(1.0, abs(a), abs(b))


def plain(x: Any) -> str:
    """``x`` as a person writes it in a message: a whole number without a decimal point or exponent (``100``,
    ``1000000``), any other number as Python's shortest round-trip ``repr`` of a float (``3.06``, ``30.6``): never a
    numpy repr such as ``np.float64(3.06)``, nor ``1e+06``.

    >>> import numpy as np
    >>> plain(1e6), plain(np.float64(3.06)), plain(0.5), plain(2.0**60)
    ('1000000', '3.06', '0.5', '1.152921504606847e+18')
    """
    x = float(x)
    if x.is_integer() and abs(x) <= 2.0**53:
        return str(int(x))
    return repr(x)
