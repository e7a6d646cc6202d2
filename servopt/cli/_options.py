"""Checks of option values that several commands share, in words that name the option. Kept free of heavy
imports: ``servopt profile`` checks its options before it loads anything else."""

from __future__ import annotations

import math

from servopt.exceptions import ValidationError

__all__ = ["check_memory_limit", "int_list"]


def check_memory_limit(limit_mb: float | None) -> None:
    """``--memory-limit-mb``: absent, or a finite number of MiB > 0.

    >>> check_memory_limit(float("inf"))
    Traceback (most recent call last):
    ...
    servopt.exceptions.ValidationError: --memory-limit-mb inf: expected a memory limit in MiB > 0
    """
    if limit_mb is not None and not (math.isfinite(limit_mb) and limit_mb > 0):
        raise ValidationError(f"--memory-limit-mb {limit_mb:g}: expected a memory limit in MiB > 0")


def int_list(flag: str, text: str) -> list[int]:
    """``flag``'s comma-separated positive integers (``--batch-sizes 1,2,4``).

    >>> int_list("--cores", "1, 2")
    [1, 2]
    >>> int_list("--cores", "0")
    Traceback (most recent call last):
    ...
    servopt.exceptions.ValidationError: --cores: expected comma-separated positive integers like 1,2,4, got '0'
    """
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValidationError(f"{flag}: expected comma-separated positive integers like 1,2,4, got {text!r}")
    return [int(p) for p in parts]
