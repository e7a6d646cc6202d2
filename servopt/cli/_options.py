"""Checks of option values that several commands share, in words that name the option. Kept free of heavy
imports: ``servopt profile`` checks its options before it loads anything else."""

from __future__ import annotations

import math

from servopt.exceptions import ValidationError

__all__ = ["check_memory_limit"]


def check_memory_limit(limit_mb: float | None) -> None:
    """``--memory-limit-mb``: absent, or a finite number of MiB > 0.

    >>> check_memory_limit(float("inf"))
    Traceback (most recent call last):
    ...
    servopt.exceptions.ValidationError: --memory-limit-mb inf: expected a memory limit in MiB > 0
    """
    if limit_mb is not None and not (math.isfinite(limit_mb) and limit_mb > 0):
        raise ValidationError(f"--memory-limit-mb {limit_mb:g}: expected a memory limit in MiB > 0")
