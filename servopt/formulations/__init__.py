"""Serving formulations: validated problem → neutral MILP → decoded plan.

One module per problem kind (``min_gpus``, ``max_throughput``, ``variant_selection``, ``pipeline``), each with a
public problem class and ``from_mapping(data, source)`` used by :mod:`servopt.problem_io`. Nothing is imported
here, so ``import servopt`` stays fast; use ``servopt.MinGPUs`` etc. or import the module you need.
"""

from __future__ import annotations

__all__: list[str] = []
