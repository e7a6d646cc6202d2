"""``min_gpus`` and ``max_throughput``: GPU pools for a batch job. ``types`` (GPU types, options, plans), ``min_gpus`` and
``max_throughput`` (the problems), ``milp`` (the aggregated and per-GPU MILPs), ``files`` (problem files).
"""
