"""Serving formulations: validated problem → neutral MILP (or DP) → decoded, typed plan.

One package per problem family, each laid out the same way:

- ``gpu/`` (``min_gpus``, ``max_throughput``): ``types``, ``min_gpus``, ``max_throughput``, ``milp``, ``files``;
- ``variant_selection/``: ``types``, ``problem``, ``dp``, ``files``;
- ``pipeline/``: ``types``, ``problem``, ``dp``, ``files``.

:mod:`servopt.formulations.registry` maps the ``problem:`` key of a file to its reader (``load_problem``);
:mod:`servopt.formulations.ties` holds what the families share (tolerances, the prefer-stable second solve).
Nothing is imported here, so ``import servopt`` stays fast.
"""

from __future__ import annotations

__all__: list[str] = []
