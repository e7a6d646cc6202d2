"""The ``perf_analyzer`` command line that reproduces a plan's load on one served model (plan predictions)."""

from __future__ import annotations

__all__ = ["rate_command", "format_rate"]


def format_rate(rps: float) -> str:
    """A request rate as perf_analyzer reads it: plain decimals, at most 3 places, no exponent.

    >>> format_rate(20.0), format_rate(1234567.891234), format_rate(0.5)
    ('20', '1234567.891', '0.5')
    """
    text = f"{float(rps):.3f}".rstrip("0").rstrip(".")
    return text or "0"


def rate_command(rps: float, batch_size: int = 1) -> str:
    """``perf_analyzer`` at a fixed request rate (``-m``/``-u`` to be set to the served model and server).

    Same form as :meth:`servopt.formulations.gpu.types.GPUPlan.predictions`' commands, with
    ``--request-rate-range`` instead of a concurrency: the plans that carry a rate (pipeline stages, variants)
    expect requests of ``batch_size`` items arriving at ``rps`` per second.

    >>> rate_command(20)
    'perf_analyzer -m MODEL -i grpc -u 127.0.0.1:8001 -b 1 --request-rate-range 20:20'
    """
    rate = format_rate(rps)
    return f"perf_analyzer -m MODEL -i grpc -u 127.0.0.1:8001 -b {int(batch_size)} --request-rate-range {rate}:{rate}"
