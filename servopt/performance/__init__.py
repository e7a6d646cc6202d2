"""Performance models fitted on profiles (SPEC §3), and exact table lookups behind the same interface.

* :class:`LatencyModel`: latency of one batch; non-decreasing in batch size, with the small-batch floor of GPUs.
* :class:`WorkLatencyModel`: the same per configuration, plus a floor-plus-roofline in the work of a batch (FLOPs
  or pixels x batch) per family for unprofiled input sizes and beyond the largest profiled batch.
* :class:`WarmupModel`: first-batch time, with feature importances; :class:`RuntimeWarmupModel`: the same
  structured by runtime (session creation, first run per shape, autotuning) on a latency model, what
  ``servopt fit`` uses.
* :class:`MaxBatchModel`: device memory vs batch and input size; the largest batch that fits.
* :class:`CapacityModel`: RPS within a latency SLO vs cores (an averaged low-order curve, or InfAdapter's line),
  with headroom.
* :class:`TableModel`: exact lookup of profiled points.

All follow scikit-learn's estimator contract; LightGBM and scikit-learn regressors plug in through
``estimator=``. :func:`batch_table` and :func:`capacity_table` give problems the per-batch and per-core tables,
either exact (``mode="table"``) or from the fitted models (``mode="fit"``).
"""

from __future__ import annotations

from servopt.performance._curves import Curve, Line, fit_curve, fit_line
from servopt.performance.capacity import CapacityModel
from servopt.performance.latency import LatencyModel
from servopt.performance.memory import MaxBatchModel
from servopt.performance.table_model import TableModel
from servopt.performance.tables import batch_table, capacity_table
from servopt.performance.warmup import WarmupModel
from servopt.performance.warmup_runtime import RuntimeWarmupModel
from servopt.performance.work_latency import WorkLatencyModel

__all__ = [
    "LatencyModel",
    "WorkLatencyModel",
    "WarmupModel",
    "RuntimeWarmupModel",
    "MaxBatchModel",
    "CapacityModel",
    "TableModel",
    "batch_table",
    "capacity_table",
    "Curve",
    "Line",
    "fit_curve",
    "fit_line",
]
