"""servopt's exception hierarchy.

Every exception servopt raises on purpose derives from :class:`ServoptError`; the subclasses also inherit the
builtin they resemble so that callers catching ``ValueError`` or ``ImportError`` keep working. Messages say what
is wrong, which item, what is allowed, and how to fix it. The CLI maps any ``ServoptError`` to exit code 2.

Infeasibility is *not* an exception: it is a result status (see :class:`servopt.result.Status`).
"""

from __future__ import annotations

__all__ = [
    "ServoptError",
    "ValidationError",
    "ModelError",
    "CapabilityError",
    "BackendUnavailableError",
    "LicenseLimitError",
    "SolverError",
]


class ServoptError(Exception):
    """Base class of every error servopt raises on purpose."""


class ValidationError(ServoptError, ValueError):
    """Bad user input: a file, key, column or value that servopt cannot accept."""


class ModelError(ServoptError, ValueError):
    """An ill-formed optimisation model (NaN/Inf coefficient, unknown variable, bad bound)."""


class CapabilityError(ServoptError, ValueError):
    """A backend cannot take this model (e.g. continuous variables on CP-SAT)."""


class BackendUnavailableError(ServoptError, ImportError):
    """A backend's solver package is not installed or cannot be used."""


class LicenseLimitError(ServoptError, RuntimeError):
    """A solver's licence does not allow a model of this size (Gurobi's size-limited pip licence)."""


class SolverError(ServoptError, RuntimeError):
    """A solver crashed or returned something servopt cannot interpret."""
