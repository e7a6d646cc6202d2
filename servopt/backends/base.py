"""The backend contract: ``solve(model_arrays, params) -> Result``, built as ``_build`` then ``_run``.

A backend declares what it can take (:class:`Capabilities`); :func:`check_capabilities` runs centrally before any
backend builds anything. Backends keep no state between solves and never import formulations.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from servopt.exceptions import BackendUnavailableError
from servopt.model import ModelArrays
from servopt.result import Result, SolveParams, Status

__all__ = ["Capabilities", "Backend", "RawAnswer", "OBJECTIVE_EXPONENT", "objective_factor"]


#: float backends see the objective scaled up so its largest coefficient is at least 2^E (below 2^(E+1) when
#: scaled), E this exponent
OBJECTIVE_EXPONENT = 5


def objective_factor(c: np.ndarray) -> float:
    """The power of two >= 1 that brings the largest objective coefficient up to [32, 64) (1 for a zero
    objective, or one whose largest coefficient is already 32 or more).

    Float solvers judge reduced costs and objective improvements against absolute tolerances (about 1e-6): an
    objective of size 1e-4 is decided at a 1 % resolution, and one of size 1 at 1e-6. Gurobi returned a product
    pipeline 13 % below the optimum with alpha = 0.001, and HiGHS one 1.3e-6 below it with weights of 1e-6, and
    both called it optimal. On 700 random pipelines with such weights, 11 plans missed the dynamic programme's
    optimum unscaled, none with the largest coefficient in [32, 64), 4 (Gurobi) with it in [8, 16); near 1024
    HiGHS failed on per-GPU models of 1.7e10 images. A power of two scales and unscales exactly.

    >>> objective_factor(np.array([0.001, -2e-6]))
    32768.0
    >>> objective_factor(np.array([40.0])), objective_factor(np.array([1e12])), objective_factor(np.zeros(2))
    (1.0, 1.0, 1.0)
    """
    top = float(np.max(np.abs(c), initial=0.0))
    if top == 0.0 or not math.isfinite(top):
        return 1.0
    # never below 1: the solvers' absolute gaps (HiGHS's mip_abs_gap 1e-6) would grow by 1/factor in the model's
    # units (coefficients of 1e12 scaled by 2^-36 let HiGHS stop 28,407 below the optimum and call it optimal)
    return math.ldexp(1.0, max(0, min(256, OBJECTIVE_EXPONENT + 1 - math.frexp(top)[1])))


@dataclass(frozen=True)
class Capabilities:
    """What a backend can take.

    continuous : continuous variables allowed.
    fractional : non-integer coefficients and bounds allowed without ``SolveParams.scale``.
    max_vars, max_constraints : a hard size limit (None: none known without a licence check).
    """

    continuous: bool = True
    integer: bool = True
    fractional: bool = True
    max_vars: int | None = None
    max_constraints: int | None = None

    def describe(self) -> str:
        kinds = [k for k, ok in (("continuous", self.continuous), ("integer", self.integer)) if ok]
        text = "+".join(kinds) + " variables"
        if not self.fractional:
            text += ", integer coefficients (fractional data needs scale=)"
        return text


@dataclass(frozen=True)
class RawAnswer:
    """What ``_run`` hands back before timing is attached."""

    status: Status
    objective: float | None = None
    best_bound: float | None = None
    values: np.ndarray | None = None
    message: str = ""


class Backend(ABC):
    """One solver. Subclasses set the class variables and implement ``_build`` and ``_run``."""

    name: ClassVar[str]
    #: distribution name probed for availability and version (no import needed)
    distribution: ClassVar[str]
    #: top-level module probed with ``importlib.util.find_spec``
    module: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()

    # ----------------------------------------------------------------- probing
    @classmethod
    def installed(cls) -> bool:
        """Whether the solver package is importable; imports nothing, takes no licence."""
        try:
            return importlib.util.find_spec(cls.module) is not None
        except (ImportError, ValueError):
            return False

    @classmethod
    def version(cls) -> str | None:
        try:
            return importlib.metadata.version(cls.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    @classmethod
    def require(cls) -> None:
        if not cls.installed():
            raise BackendUnavailableError(
                f"backend {cls.name!r} needs the Python package {cls.distribution!r}, which is not installed; "
                f"install it (pip install 'servopt[{cls.extra()}]') or choose another backend"
            )

    @classmethod
    def extra(cls) -> str:
        return "all"

    # ------------------------------------------------------------------ solving
    def solve(self, arrays: ModelArrays, params: SolveParams) -> Result:
        """Build the native model, run it, and time both.

        Float solvers (``capabilities.fractional``) get the objective scaled by :func:`objective_factor`; the
        objective and bound they return are scaled back, exactly.
        """
        self.require()
        self.check_options(params)
        factor = objective_factor(arrays.c) if self.capabilities.fractional else 1.0
        if factor != 1.0:
            arrays = dataclasses.replace(arrays, c=arrays.c * factor, obj_constant=arrays.obj_constant * factor)
        t0 = time.perf_counter()
        native = self._build(arrays, params)
        t1 = time.perf_counter()
        raw = self._run(native, arrays, params)
        t2 = time.perf_counter()
        return Result(
            status=raw.status,
            objective=None if raw.objective is None else raw.objective / factor,
            best_bound=None if raw.best_bound is None else raw.best_bound / factor,
            values=raw.values,
            backend=self.name,
            build_seconds=t1 - t0,
            solve_seconds=t2 - t1,
            message=raw.message,
        )

    def check_options(self, params: SolveParams) -> None:
        """Raise if ``params.options`` holds names this solver does not know (override per backend)."""

    @abstractmethod
    def _build(self, arrays: ModelArrays, params: SolveParams) -> Any:
        """Translate the arrays into the solver's own model object (testable without solving)."""

    @abstractmethod
    def _run(self, native: Any, arrays: ModelArrays, params: SolveParams) -> RawAnswer:
        """Solve the native model and map the answer back to servopt's vocabulary."""
