"""Solve parameters, statuses and results shared by every backend."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from servopt.exceptions import ValidationError
from servopt.model import LinExpr, Var

__all__ = ["Status", "SolveParams", "Result"]


class Status(str, enum.Enum):
    """What a solve established.

    ``FEASIBLE`` means a limit (time, gap) stopped the solver with a solution that is not proven optimal.
    Infeasible and unbounded are results, not exceptions.
    """

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    ERROR = "error"

    @property
    def has_solution(self) -> bool:
        return self in (Status.OPTIMAL, Status.FEASIBLE)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class SolveParams:
    """Options every backend understands.

    Parameters
    ----------
    time_limit_s : float or None
        Wall-clock limit; when hit with an incumbent, the status is ``feasible``.
    mip_gap : float
        Relative optimality gap at which to stop (0 proves optimality).
    threads : int or None
        Solver threads (backend default when None).
    seed : int
        Random seed passed to the solver.
    scale : float or None
        CP-SAT only: multiply every coefficient and bound by this factor and round to integers (checked for
        overflow and for rounding error; see ``servopt.backends.cpsat``). Without it, fractional data on CP-SAT is
        an error, never silently rounded.
    options : Mapping[str, Any]
        Native solver parameters passed through by name; unknown names raise.
    verbose : bool
        Let the solver print its log.
    """

    time_limit_s: float | None = None
    mip_gap: float = 0.0
    threads: int | None = None
    seed: int = 0
    scale: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.time_limit_s is not None and not (self.time_limit_s > 0 and math.isfinite(self.time_limit_s)):
            raise ValidationError(f"time_limit_s={self.time_limit_s!r}: give a positive number of seconds")
        if not (0.0 <= self.mip_gap < 1.0):
            raise ValidationError(f"mip_gap={self.mip_gap!r}: give a relative gap in [0, 1)")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValidationError(f"threads={self.threads!r}: give a positive integer or None")
        if self.scale is not None and not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValidationError(f"scale={self.scale!r}: give a positive finite factor or None")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


@dataclass(frozen=True)
class Result:
    """The answer of one backend to one model.

    ``values`` is indexed like the model's variables (read-only); use ``result[var]`` or
    ``result.value(expr)`` to read it.
    """

    status: Status
    objective: float | None
    best_bound: float | None
    values: np.ndarray | None
    backend: str
    build_seconds: float
    solve_seconds: float
    message: str = ""

    def __post_init__(self) -> None:
        if self.values is not None:
            values = np.array(self.values, dtype=float)
            values.setflags(write=False)
            object.__setattr__(self, "values", values)

    def value(self, expr: Var | LinExpr | float) -> float:
        if self.values is None:
            raise ValidationError(f"the solve ended {self.status.value}: there are no variable values to read")
        if isinstance(expr, Var):
            return float(self.values[expr.index])
        if isinstance(expr, LinExpr):
            return expr.value(self.values)
        return float(expr)

    def __getitem__(self, expr: Var | LinExpr) -> float:
        return self.value(expr)
