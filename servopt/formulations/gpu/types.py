"""What ``min_gpus`` and ``max_throughput`` share: GPU types, batch options (plans: :mod:`.plan`; files: ``files``).

A GPU of type *g* running batch size *b* for *k* batches is busy ``W_g(b) + (k - 1) L_g(b)`` (warm-up, then
steady-state batches) and processes ``k b`` images. Within a deadline *T* the most batches it can run is

    k_max = min(M_g + 1, 1 + floor((T - W_g(b)) / L_g(b)))      (0 when W_g(b) > T)

computed once here, exactly on the decimals the inputs print as (see :func:`max_batches_within` and
:mod:`servopt.exact`), so the MILPs carry no floating-point busy-time rows. The two formulations built from these options live in
:mod:`servopt.formulations.gpu.milp`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

from servopt.exact import dec, decimals, floor_div
from servopt.exceptions import ValidationError
from servopt.fields import is_number
from servopt.formulations.gpu.plan import GPUGroup, GPUPlan, plan_from_counts

__all__ = [
    "FORMULATIONS",
    "PER_GPU_LIMIT",
    "BatchPoint",
    "GPUType",
    "GPUOption",
    "GPUGroup",
    "GPUPlan",
    "max_batches_within",
    "gpu_options",
    "busy_limit_ms",
    "measured_instances_per_gpu",
    "plan_from_counts",
]

#: the two exact linearisations of the seed's model; ``aggregated`` is the default (benchmarks/results/)
FORMULATIONS = ("aggregated", "per_gpu")

#: the most GPUs ``formulation: per_gpu`` gives variables (each GPU takes about 0.5 ms and 4 KB to build, per batch
#: size a binary, an integer and two rows): a larger pool is cut to the GPUs an optimal plan can use
#: (:meth:`GPUProblemBase.per_gpu_blocks`), and refused when even that is more
PER_GPU_LIMIT = 100_000


def busy_limit_ms(deadline_s: float) -> Fraction:
    """The deadline in milliseconds, exactly (the decimal ``deadline_s`` prints as, times 1000)."""
    return dec(deadline_s) * 1000


def max_batches_within(deadline_s: float, warmup_ms: float, latency_ms: float, cap: int | None = None) -> int:
    """The most batches one GPU runs within the deadline: the largest k with ``W + (k-1) L <= T``.

    Decided exactly on the decimals the numbers print as (:mod:`servopt.exact`): no tolerance, so the plan
    checker on the return path of every solve agrees with it.

    Parameters
    ----------
    deadline_s : float
        T, seconds.
    warmup_ms, latency_ms : float
        W (first batch) and L (each further batch), milliseconds; ``latency_ms > 0``.
    cap : int, optional
        M, the most batches after the first (``k - 1 <= M``).

    Returns
    -------
    int
        k_max, or 0 when even the first batch misses the deadline.

    Examples
    --------
    >>> max_batches_within(1.0, warmup_ms=100.0, latency_ms=300.0)
    4
    >>> max_batches_within(1.0, 100.0, 300.0, cap=1), max_batches_within(0.05, 100.0, 300.0)
    (2, 0)
    >>> max_batches_within(1.0, 300.0, 100.0)  # 300 + 7 * 100 == 1000 exactly
    8
    """
    k = _max_batches_float(float(deadline_s), float(warmup_ms), float(latency_ms))
    if k is None:  # within float error of a boundary: decided on the exact decimals
        limit = busy_limit_ms(deadline_s)
        warm = dec(warmup_ms)
        if warm > limit:
            return 0
        k = 1 + floor_div(limit - warm, dec(latency_ms))
    if cap is not None:
        k = min(k, cap + 1)
    return k


def _max_batches_float(deadline_s: float, warmup_ms: float, latency_ms: float) -> int | None:
    """k_max in floating point where no rounding can change it, else None (then it is decided exactly).

    Each of the three float operations errs by at most half an ulp; the bound ``slack`` is 1,000x that error, so
    when the quotient is farther than ``slack`` from a whole number (and the warm-up farther than that from the
    deadline) the float answer is the exact one.
    """
    if not (latency_ms > 0 and math.isfinite(deadline_s) and math.isfinite(warmup_ms) and math.isfinite(latency_ms)):
        return None
    limit = deadline_s * 1000.0
    room = limit - warmup_ms
    scale = abs(limit) + abs(warmup_ms)
    if abs(room) <= 1e-12 * scale:
        return None
    if room < 0:
        return 0
    q = room / latency_ms
    slack = 1e-12 * (scale / latency_ms + q) + 1e-12
    if q > 2.0**52 or abs(q - round(q)) <= slack:
        return None
    return 1 + int(math.floor(q))


@dataclass(frozen=True)
class BatchPoint:
    """Performance of one batch size on one GPU type (milliseconds; warm-up defaults to the latency)."""

    batch_size: int
    latency_ms: float
    warmup_ms: float
    warmup_known: bool = True
    memory_mb: float | None = None


def _point(b: Any, value: Any, where: str) -> BatchPoint:
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValidationError(f"{where}: batch size {b!r} is not an integer >= 1")
    if isinstance(value, BatchPoint):
        if value.batch_size != b:
            raise ValidationError(f"{where}: key {b} holds the point of batch size {value.batch_size}")
        return value
    if is_number(value):
        value = {"latency_ms": value}
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"{where}.{b}: expected {{latency_ms: ..., warmup_ms: ...}} or a latency in ms, got {value!r}"
        )
    unknown = set(value) - {"latency_ms", "warmup_ms", "memory_mb", "throughput_rps"}
    if unknown:
        raise ValidationError(
            f"{where}.{b}: unknown key {sorted(map(str, unknown))[0]!r} (allowed: latency_ms, warmup_ms, "
            "memory_mb, throughput_rps)"
        )
    lat = value.get("latency_ms")
    if not is_number(lat) or not (0 < float(lat) < math.inf):
        raise ValidationError(f"{where}.{b}.latency_ms: expected a number > 0, got {lat!r}")
    warm = value.get("warmup_ms")
    if warm is not None and (not is_number(warm) or not (0 < float(warm) < math.inf)):
        raise ValidationError(f"{where}.{b}.warmup_ms: expected a number > 0, got {warm!r}")
    mem = value.get("memory_mb")
    if mem is not None and (not is_number(mem) or not (0 <= float(mem) < math.inf)):
        raise ValidationError(f"{where}.{b}.memory_mb: expected a number >= 0, got {mem!r}")
    return BatchPoint(
        batch_size=b,
        latency_ms=float(lat),
        warmup_ms=float(warm) if warm is not None else float(lat),
        warmup_known=warm is not None,
        memory_mb=float(mem) if mem is not None else None,
    )


@dataclass(frozen=True)
class GPUType:
    """One kind of GPU in the pool.

    Parameters
    ----------
    hardware : str
        Name, e.g. ``A100-80GB`` (unique in a pool).
    max_count : int
        C_g, how many GPUs of this type are available (0 disables the type).
    batches : mapping of int to mapping
        Batch size -> ``{"latency_ms": L, "warmup_ms": W}`` (warm-up optional: W = L when unknown; a bare number
        is read as the latency). ``memory_mb`` is accepted and kept for reports.
    cost_per_hour : float, optional
        c_g; needed by ``objective="cost"`` and by ``budget_per_hour``.
    max_batches : int, optional
        M_g, the most batches a GPU runs *after its first* (``k - 1 <= M_g``, SPEC §4.1).
    max_batch_size : int, optional
        MB_g: batch sizes above it are not offered (e.g. they do not fit device memory).
    instances_per_gpu : int
        Model instances on each GPU of this type in the configuration the latencies were measured with (Model
        Analyzer's ``instance_group`` count per GPU; default 1). It does not change the capacity model (a GPU
        runs ``W + (k - 1) L`` as measured in that configuration); it is carried into the plan's groups so the
        deployment (Triton's ``instance_group { count: ... }``) reproduces the measured configuration.

    Examples
    --------
    >>> t4 = GPUType("T4", max_count=4, batches={1: {"latency_ms": 5.0, "warmup_ms": 900.0}, 8: 21.0})
    >>> [(p.batch_size, p.latency_ms, p.warmup_ms) for p in t4.batches]
    [(1, 5.0, 900.0), (8, 21.0, 21.0)]
    """

    hardware: str
    max_count: int
    batches: Any
    cost_per_hour: float | None = None
    max_batches: int | None = None
    max_batch_size: int | None = None
    instances_per_gpu: int = 1

    def __post_init__(self) -> None:
        where = f"GPU type {self.hardware!r}"
        n = self.instances_per_gpu
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValidationError(f"{where}: instances_per_gpu={n!r}; give an integer >= 1 (model instances on "
                                  "each GPU)")
        if not isinstance(self.hardware, str) or not self.hardware.strip():
            raise ValidationError(f"GPU type: hardware must be a non-empty string, got {self.hardware!r}")
        if isinstance(self.max_count, bool) or not isinstance(self.max_count, int) or self.max_count < 0:
            raise ValidationError(f"{where}: max_count={self.max_count!r}; give an integer >= 0")
        if self.cost_per_hour is not None:
            if not is_number(self.cost_per_hour) or self.cost_per_hour < 0:
                raise ValidationError(f"{where}: cost_per_hour={self.cost_per_hour!r}; give a number >= 0")
            object.__setattr__(self, "cost_per_hour", float(self.cost_per_hour))
        for key in ("max_batches", "max_batch_size"):
            value = getattr(self, key)
            low = 0 if key == "max_batches" else 1
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValidationError(f"{where}: {key}={value!r}; give an integer >= {low} or leave it out")
        raw = self.batches
        if isinstance(raw, Mapping):
            items = list(raw.items())
        elif isinstance(raw, (list, tuple)) and all(isinstance(p, BatchPoint) for p in raw):
            items = [(p.batch_size, p) for p in raw]
        else:
            raise ValidationError(
                f"{where}: batches must map batch size -> {{latency_ms, warmup_ms}}, got {type(raw).__name__}"
            )
        if not items:
            raise ValidationError(f"{where}: batches is empty; give at least one batch size with its latency")
        points = sorted((_point(b, v, f"{where} batches") for b, v in items), key=lambda p: p.batch_size)
        if len({p.batch_size for p in points}) != len(points):
            raise ValidationError(f"{where}: batches lists a batch size twice")
        object.__setattr__(self, "batches", tuple(points))

    @classmethod
    def from_profile(cls, profile: Any, hardware: str, max_count: int, *, mode: str = "table",
                     cost_per_hour: float | None = None, max_batches: int | None = None,
                     max_batch_size: int | None = None, instances_per_gpu: int | None = None,
                     **selectors: Any) -> GPUType:
        """A GPU type whose batch table comes from a profile (``servopt.load_profile(...)`` or a DataFrame).

        ``mode="table"`` takes the profiled points as they are, ``"fit"`` the fitted latency curve;
        ``selectors`` (``model=``, ``variant=``, ``input_size=``, ``cores=``, ``where=``) pick the rows, as in
        :func:`servopt.performance.batch_table`. ``instances_per_gpu`` defaults to the selected rows' label of
        that name (Model Analyzer imports), else 1 (see :func:`measured_instances_per_gpu`).

        Examples
        --------
        >>> import servopt
        >>> profile = servopt.load_profile("profiles/nvidia_efficientnet_pytorch.csv")    # doctest: +SKIP
        >>> GPUType.from_profile(profile, "A100-80GB", 4, variant="efficientnet-b0-amp")  # doctest: +SKIP
        """
        from servopt.performance import batch_table

        table = batch_table(profile, hardware=hardware, mode=mode, **selectors)
        batches = {int(b): {k: float(v) for k, v in row.items()
                            if k in ("latency_ms", "warmup_ms", "memory_mb") and is_number(v)}
                   for b, row in table.items()}
        rows = {k: v for k, v in selectors.items() if k != "source"}
        measured = measured_instances_per_gpu(profile, hardware, rows, str(selectors.get("source", "<profile>")))
        if instances_per_gpu is not None and measured is not None and instances_per_gpu != measured:
            raise ValidationError(
                f"GPU type {hardware!r}: instances_per_gpu={instances_per_gpu}, but the selected profile rows were "
                f"measured with {measured} instances per GPU; leave it out or select rows measured with "
                f"{instances_per_gpu} (where={{'instances_per_gpu': {instances_per_gpu}}})")
        return cls(hardware, max_count, batches, cost_per_hour=cost_per_hour, max_batches=max_batches,
                   max_batch_size=max_batch_size, instances_per_gpu=instances_per_gpu or measured or 1)

    def point(self, batch_size: int) -> BatchPoint | None:
        """The performance of ``batch_size``, or None if this type does not offer it."""
        return next((p for p in self.batches if p.batch_size == batch_size), None)

    def offered(self, latency_slo_ms: float | None = None) -> tuple[BatchPoint, ...]:
        """Batch sizes within ``max_batch_size`` and, when given, the per-batch latency SLO."""
        return tuple(
            p for p in self.batches
            if (self.max_batch_size is None or p.batch_size <= self.max_batch_size)
            and (latency_slo_ms is None or dec(p.latency_ms) <= dec(latency_slo_ms))
        )


def measured_instances_per_gpu(profile: Any, hardware: str, selectors: Mapping[str, Any],
                               source: str = "<profile>") -> int | None:
    """The ``instances_per_gpu`` label of the rows ``selectors`` pick (one value), or None without the label.

    ``selectors`` are those of :func:`servopt.performance.batch_table` (``model``, ``variant``, ``input_size``,
    ``cores``, ``where``). Model Analyzer imports carry the label (its ``instance_group`` count per GPU).

    Raises
    ------
    ValidationError
        The rows were measured with different instance counts, or some with one and some without: the message
        suggests the ``where:`` that picks one configuration.
    """
    frame = getattr(profile, "frame", profile)
    if "instances_per_gpu" not in getattr(frame, "columns", ()):
        return None
    from servopt.profiles import select_rows

    where = dict(selectors.get("where") or {})
    picked = {k: v for k, v in selectors.items() if k != "where" and v is not None}
    rows = select_rows(frame, {"hardware": hardware, **picked, **where}, source)
    values = sorted({int(v) for v in rows["instances_per_gpu"].dropna()})
    if not values:
        return None
    if len(values) > 1:
        raise ValidationError(
            f"{source}: the selected rows were measured with different instances per GPU "
            f"({', '.join(map(str, values))}); add where: {{instances_per_gpu: {values[0]}}} to pick one "
            "configuration")
    if rows["instances_per_gpu"].isna().any():
        raise ValidationError(
            f"{source}: some selected rows have instances_per_gpu {values[0]}, others none (no GPU instance group); "
            f"add where: {{instances_per_gpu: {values[0]}}} to pick one configuration")
    return values[0]


@dataclass(frozen=True)
class GPUOption:
    """One GPU of type ``type_index`` running ``batch_size`` for its most batches within the deadline."""

    type_index: int
    hardware: str
    batch_size: int
    latency_ms: float
    warmup_ms: float
    batches: int

    @property
    def images(self) -> int:
        return self.batch_size * self.batches

    @property
    def busy_s(self) -> float:
        return (self.warmup_ms + (self.batches - 1) * self.latency_ms) / 1000.0


def gpu_options(gpus: Sequence[GPUType], deadline_s: float, latency_slo_ms: float | None = None) -> list[GPUOption]:
    """Every (GPU type, batch size) that fits the deadline, with k_max batches, in pool and batch order."""
    out = []
    for g, gpu in enumerate(gpus):
        if gpu.max_count == 0:
            continue
        for p in gpu.offered(latency_slo_ms):
            k = max_batches_within(deadline_s, p.warmup_ms, p.latency_ms, gpu.max_batches)
            if k >= 1:
                out.append(GPUOption(g, gpu.hardware, p.batch_size, p.latency_ms, p.warmup_ms, k))
    return out


def fmt_count(n: float) -> str:
    """``8,123,456`` -> ``8.12 M`` for messages (exact below 100,000)."""
    if n >= 1e9:
        return f"{n / 1e9:.3g} G"
    if n >= 1e6:
        return f"{n / 1e6:.3g} M"
    if n >= 1e5:
        return f"{n / 1e3:.4g} k"
    return f"{int(n):,}"


@dataclass(frozen=True, kw_only=True)
class GPUProblemBase:
    """Fields and checks shared by :class:`~servopt.formulations.gpu.min_gpus.MinGPUs` and ``MaxThroughput``."""

    kind: ClassVar[str]

    deadline_s: float
    gpus: Sequence[GPUType]
    latency_slo_ms: float | None = None
    formulation: str = "aggregated"
    name: str = "model"
    model: str | None = None
    input_size: int | None = None
    triton: Mapping[str, Any] | None = field(default=None, compare=False)
    source: Path | None = field(default=None, compare=False)
    #: the model file that serves the model (``model_file:``, checked when the problem file is read)
    model_file: Path | None = field(default=None, compare=False)
    #: the margin planned on with ``latency_quantile:`` (:func:`servopt.performance.uncertainty.margin_record`)
    latency_margin: Mapping[str, Any] | None = field(default=None, compare=False)
    #: the largest batches that fit a ``memory_limit_mb:`` and the margin held back for them
    #: (``servopt.formulations.gpu.files``)
    memory_margin: Mapping[str, Any] | None = field(default=None, compare=False)
    #: model-config parameters the profiles were measured with and the server must run with (``enable_mem_pattern
    #: "0"`` for rows measured with ``servopt profile --mem-pattern off``); the Triton writer adds each one a
    #: template does not set
    serving_parameters: Mapping[str, str] | None = field(default=None, compare=False)
    #: the CPU cores the profiles' rows were measured with (the problem file's ``cores`` selector): a deployment on
    #: CPU instances (``triton.instance_kind: KIND_CPU``) runs each with that many intra-op threads
    cores: float | None = field(default=None, compare=False)

    def _check_common(self) -> None:
        if not is_number(self.deadline_s) or self.deadline_s <= 0:
            raise ValidationError(f"deadline_s={self.deadline_s!r}; give a number of seconds > 0")
        object.__setattr__(self, "deadline_s", float(self.deadline_s))
        if self.latency_slo_ms is not None:
            if not is_number(self.latency_slo_ms) or self.latency_slo_ms <= 0:
                raise ValidationError(f"latency_slo_ms={self.latency_slo_ms!r}; give milliseconds > 0 or None")
            object.__setattr__(self, "latency_slo_ms", float(self.latency_slo_ms))
        if self.formulation not in FORMULATIONS:
            raise ValidationError(
                f"formulation={self.formulation!r}; choose one of {', '.join(FORMULATIONS)}"
            )
        gpus = tuple(self.gpus) if not isinstance(self.gpus, GPUType) else (self.gpus,)
        if not gpus:
            raise ValidationError("gpus is empty; give at least one GPU type")
        for i, g in enumerate(gpus):
            if not isinstance(g, GPUType):
                raise ValidationError(f"gpus[{i}] is a {type(g).__name__}; give servopt.GPUType objects")
        seen: set[str] = set()
        for g in gpus:
            if g.hardware in seen:
                raise ValidationError(
                    f"GPU type {g.hardware!r} appears twice in gpus; merge the entries or give them distinct "
                    "names (e.g. 'T4-spot')"
                )
            seen.add(g.hardware)
        object.__setattr__(self, "gpus", gpus)
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"name={self.name!r}; give a non-empty model name")
        from servopt.formulations.gpu.arrays import pool_arrays

        pool_arrays(self)  # the greedy's arrays, built with the problem (outside solve_seconds)

    def _gpu_bounds(self) -> dict[int, int]:
        """Per GPU type (index into ``gpus``), at most how many GPUs some optimal plan uses (exactly; {}: none known).

        Each problem states its own (:meth:`per_gpu_blocks` uses them only for a pool above :data:`PER_GPU_LIMIT`).
        """
        return {}

    def per_gpu_blocks(self) -> tuple[int, ...]:
        """How many GPUs of each type (index into ``gpus``) ``formulation: per_gpu`` gives variables.

        ``max_count`` of each type that has a batch size within the deadline, as documented (docs/formulations.md),
        for pools of up to :data:`PER_GPU_LIMIT` GPUs. A larger pool is cut to each type's exact bound
        (:meth:`_gpu_bounds`: GPUs beyond it are never needed by an optimal plan, so the optimum is unchanged).

        Raises
        ------
        ValidationError
            When even the cut pool is above the limit, naming the ``max_count`` and the model's size, and
            suggesting ``formulation: aggregated`` (whose size does not grow with the pool).
        """
        from servopt.formulations.gpu.arrays import pool_arrays

        cached = self.__dict__.get("_per_gpu_blocks")
        if cached is not None:
            return cached
        blocks = [0] * len(self.gpus)
        for o in pool_arrays(self).options:  # one per type with an option within the deadline (and SLO)
            blocks[o.type_index] = self.gpus[o.type_index].max_count
        total = sum(blocks)
        if total > PER_GPU_LIMIT:
            for g, bound in self._gpu_bounds().items():
                blocks[g] = min(blocks[g], bound)
            if sum(blocks) > PER_GPU_LIMIT:
                raise self._per_gpu_too_large(blocks, total)
        cached = tuple(blocks)
        object.__setattr__(self, "_per_gpu_blocks", cached)
        return cached

    def _per_gpu_too_large(self, blocks: list[int], total: int) -> ValidationError:
        sizes: dict[int, int] = {}
        for o in self.options():
            sizes[o.type_index] = sizes.get(o.type_index, 0) + 1
        variables = sum(2 * sizes.get(g, 0) * n for g, n in enumerate(blocks))
        rows = sum((2 * sizes.get(g, 0) + 2) * n for g, n in enumerate(blocks))
        g = max(range(len(blocks)), key=lambda i: blocks[i])
        gpu = self.gpus[g]
        cut = sum(blocks)
        needed = f", counting only the {cut:,} of {total:,} an optimal plan can use" if cut < total else ""
        return ValidationError(
            f"key 'gpus[{g}].max_count': {gpu.max_count:,} {gpu.hardware} GPUs with formulation 'per_gpu' need a "
            f"model of about {variables:,} variables and {rows:,} rows (per GPU and batch size a binary, an integer "
            f"and two rows{needed}), above the per-GPU model's limit of {PER_GPU_LIMIT:,} GPUs; use formulation: "
            "aggregated (one integer per GPU type and batch size, the same optimum) or lower max_count")

    def verify(self, plan: GPUPlan) -> list[str]:
        """Every constraint ``plan`` breaks, decided exactly (:mod:`servopt.formulations.gpu.verify`)."""
        from servopt.formulations.gpu.verify import violations

        return violations(self, plan)

    def exact_fallbacks(self) -> list[tuple[str, dict[str, Any]]]:
        """How to re-solve exactly when a plan fails :meth:`verify`: CP-SAT on integer data.

        Images and GPU counts are integers; prices are scaled by ``10**d`` (d: their decimal places), which
        CP-SAT's ``scale`` checks to be exact, so CP-SAT decides every row in integers.
        """
        priced = [g.cost_per_hour for g in self.gpus if g.cost_per_hour is not None]
        budget = getattr(self, "budget_per_hour", None)
        if budget is not None:
            priced.append(budget)
        uses_prices = getattr(self, "objective", None) == "cost" or budget is not None
        d = max((decimals(c) for c in priced), default=0) if uses_prices else 0
        if d > 9:
            return []
        return [("cpsat", {"scale": float(10 ** d)} if d else {})]

    def options(self) -> list[GPUOption]:
        """Every feasible (GPU type, batch size) with its k_max batches."""
        return gpu_options(self.gpus, self.deadline_s, self.latency_slo_ms)

    def _why_no_option(self) -> str | None:
        """A sentence when no GPU type can run any batch size within the deadline (and SLO), else None."""
        if self.options():
            return None
        pool = [g for g in self.gpus if g.max_count > 0]
        if not pool:
            return "every GPU type has max_count 0, so the pool is empty; give at least one type max_count >= 1"
        sized = [(g, p) for g in pool for p in g.offered()]
        if not sized:
            caps = ", ".join(f"{g.hardware} {g.max_batch_size}" for g in pool)
            return (
                f"no profiled batch size is within max_batch_size of any GPU type (max_batch_size: {caps}); "
                "raise max_batch_size or profile smaller batches"
            )
        if self.latency_slo_ms is not None:
            within = [(g, p) for g in pool for p in g.offered(self.latency_slo_ms)]
            if not within:
                g, p = min(sized, key=lambda gp: gp[1].latency_ms)
                return (
                    f"latency_slo_ms {self.latency_slo_ms:g} is below the per-batch latency of every GPU type "
                    f"(fastest: {g.hardware} at batch {p.batch_size}, {p.latency_ms:g} ms); raise the SLO"
                )
            sized = within
        g, p = min(sized, key=lambda gp: gp[1].warmup_ms)
        return (
            f"deadline {self.deadline_s:g} s is below the first-batch time of every GPU type (fastest: "
            f"{g.hardware} at batch {p.batch_size}, {p.warmup_ms / 1000:.4g} s); allow at least that long"
        )

    def capacity(self) -> int:
        """Images the whole pool processes within the deadline, each GPU at its best batch size."""
        from servopt.formulations.gpu.arrays import pool_arrays

        return pool_arrays(self).total

