"""The data of ``fleet``: GPU types, MIG profiles, models, co-location factors, and the typed plan.

The plan types (:class:`FleetPlacement`, :class:`FleetGpu`, :class:`FleetPlan`) are the interface the Triton /
KServe writers consume (``/work/prompts/fleet_contract.md``); their fields do not change without a note there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from servopt.exceptions import ValidationError
from servopt.fields import as_int, as_number
from servopt.formulations.ties import format_table

__all__ = ["MigProfile", "GpuType", "Performance", "FleetModel", "Colocation", "FleetPlacement", "FleetGpu",
           "FleetPlan", "SLO_FACTOR", "OBJECTIVES"]

#: latency bound: SLO_FACTOR[slo] * latency_ms(b) * slowdown <= slo_ms (wait for a batch to form + process it)
SLO_FACTOR: Mapping[str, float] = MappingProxyType({"p99": 2.0, "mean": 1.5})

#: the objectives a fleet problem may minimise
OBJECTIVES = ("cost", "gpus", "weighted")


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what}: give a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class MigProfile:
    """One MIG slice profile a GPU type may be partitioned into.

    Parameters
    ----------
    profile : str
        NVIDIA's name, e.g. ``1g.10gb``.
    compute : int
        Compute in sevenths of the GPU (1..7).
    memory_mb : float
        Memory of one slice.
    """

    profile: str
    compute: int
    memory_mb: float

    def __post_init__(self) -> None:
        _name(self.profile, "mig profile")
        where = f"mig profile {self.profile!r}"
        object.__setattr__(self, "compute", as_int(self.compute, f"{where}: compute", minimum=1, maximum=7))
        object.__setattr__(self, "memory_mb", as_number(self.memory_mb, f"{where}: memory_mb", positive=True))


@dataclass(frozen=True)
class GpuType:
    """A GPU type of the fleet.

    ``layouts`` are the MIG partitions allowed (each a tuple of profile names); when the problem file gives none,
    every multiset of the profiles whose compute sums to at most 7 and whose memory fits the GPU is allowed (an
    approximation of NVIDIA's placement rules, stated in docs/fleet.md).
    """

    name: str
    count: int
    memory_mb: float
    price_per_hour: float
    gpus_per_node: int = 8
    mig: tuple[MigProfile, ...] = ()
    layouts: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        _name(self.name, "gpu type name")
        if "/" in self.name:
            raise ValidationError(f"gpu type {self.name!r}: names may not contain '/' (it separates TYPE/PROFILE)")
        where = f"gpu type {self.name!r}"
        object.__setattr__(self, "count", as_int(self.count, f"{where}: count", minimum=0))
        object.__setattr__(self, "memory_mb", as_number(self.memory_mb, f"{where}: memory_mb", positive=True))
        object.__setattr__(self, "price_per_hour", as_number(self.price_per_hour, f"{where}: price_per_hour",
                                                             minimum=0.0))
        object.__setattr__(self, "gpus_per_node", as_int(self.gpus_per_node, f"{where}: gpus_per_node", minimum=1))
        mig = tuple(self.mig)
        names = [p.profile for p in mig]
        if len(set(names)) != len(names):
            raise ValidationError(f"{where}: mig profiles must be unique, got {names}")
        for p in mig:
            if p.memory_mb > self.memory_mb:
                raise ValidationError(f"{where}: mig profile {p.profile!r} memory_mb {p.memory_mb:g} exceeds the "
                                      f"GPU's {self.memory_mb:g}")
        object.__setattr__(self, "mig", mig)
        layouts = tuple(tuple(sorted(lay)) for lay in self.layouts)
        if layouts and not mig:
            raise ValidationError(f"{where}: layouts given without mig profiles")
        for lay in layouts:
            self.check_layout(lay)
        if mig and not layouts:
            layouts = self._derived_layouts()
        object.__setattr__(self, "layouts", tuple(dict.fromkeys(layouts)))

    def profile(self, name: str) -> MigProfile:
        """The MIG profile called ``name``."""
        for p in self.mig:
            if p.profile == name:
                return p
        raise ValidationError(f"gpu type {self.name!r}: unknown mig profile {name!r}; known: "
                              f"{', '.join(p.profile for p in self.mig) or 'none'}")

    def check_layout(self, layout: tuple[str, ...]) -> None:
        """Raise unless ``layout`` (profile names) fits: known profiles, compute <= 7, memory <= the GPU's."""
        if not layout:
            raise ValidationError(f"gpu type {self.name!r}: an empty MIG layout")
        profiles = [self.profile(n) for n in layout]
        if sum(p.compute for p in profiles) > 7:
            raise ValidationError(f"gpu type {self.name!r}: MIG layout {list(layout)} uses "
                                  f"{sum(p.compute for p in profiles)}/7 compute slices")
        if sum(p.memory_mb for p in profiles) > self.memory_mb:
            raise ValidationError(f"gpu type {self.name!r}: MIG layout {list(layout)} needs "
                                  f"{sum(p.memory_mb for p in profiles):g} MB of the GPU's {self.memory_mb:g}")

    def _derived_layouts(self) -> tuple[tuple[str, ...], ...]:
        out: list[tuple[str, ...]] = []
        profiles = sorted(self.mig, key=lambda p: p.profile)

        def grow(start: int, chosen: list[MigProfile], compute: int, memory: float) -> None:
            if chosen:
                out.append(tuple(p.profile for p in chosen))
            for i in range(start, len(profiles)):
                p = profiles[i]
                if compute + p.compute <= 7 and memory + p.memory_mb <= self.memory_mb:
                    grow(i, chosen + [p], compute + p.compute, memory + p.memory_mb)

        grow(0, [], 0, 0.0)
        return tuple(out)


@dataclass(frozen=True)
class Performance:
    """A model's performance on one GPU type or MIG slice (key ``TYPE`` or ``TYPE/PROFILE``).

    Parameters
    ----------
    latency_ms : Mapping[int, float]
        Batch size -> latency of one batch when the model runs alone with one instance (profiled points only).
    instance_mb, per_batch_mb : float
        Memory of one instance: ``instance_mb + per_batch_mb * batch``.
    scaled_from : str, optional
        Set when the latencies were derived from the whole GPU's (``latency * 7 / compute``, an assumption).
    memory_table : Mapping[int, float], optional
        Batch size -> memory of one instance, for every batch size of ``latency_ms``; replaces the line
        (``memory_mb: fit``: the memory model's prediction over its usable fraction of the GPU's or slice's memory,
        :meth:`servopt.performance.MaxBatchModel.planned_memory`).
    """

    latency_ms: Mapping[int, float]
    instance_mb: float
    per_batch_mb: float = 0.0
    scaled_from: str | None = None
    memory_table: Mapping[int, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.latency_ms, Mapping) or not self.latency_ms:
            raise ValidationError("latency_ms: give a non-empty mapping batch size -> milliseconds")
        table = {}
        for b, lat in self.latency_ms.items():
            b = as_int(b, "latency_ms batch size", minimum=1)
            table[b] = as_number(lat, f"latency_ms[{b}]", positive=True)
        object.__setattr__(self, "latency_ms", MappingProxyType(dict(sorted(table.items()))))
        object.__setattr__(self, "instance_mb", as_number(self.instance_mb, "memory_mb.instance", minimum=0.0))
        object.__setattr__(self, "per_batch_mb", as_number(self.per_batch_mb, "memory_mb.per_batch", minimum=0.0))
        if self.memory_table is not None:
            if not isinstance(self.memory_table, Mapping):
                raise ValidationError("memory_table: give a mapping batch size -> MB")
            memory = {as_int(b, "memory_table batch size", minimum=1): as_number(mb, f"memory_table[{b}]",
                                                                                   minimum=0.0)
                      for b, mb in self.memory_table.items()}
            missing = sorted(set(table) - set(memory))
            if missing:
                raise ValidationError(f"memory_table: no memory for batch size(s) {missing} of latency_ms")
            object.__setattr__(self, "memory_table", MappingProxyType(dict(sorted(memory.items()))))

    def memory(self, batch: int, instances: int = 1) -> float:
        """Memory of ``instances`` instances at batch size ``batch``."""
        if self.memory_table is not None:
            return instances * self.memory_table[batch]
        return instances * (self.instance_mb + self.per_batch_mb * batch)


@dataclass(frozen=True)
class FleetModel:
    """One model to serve: its load, SLO and performance per GPU type / MIG slice."""

    name: str
    rate_rps: float
    slo_ms: float
    slo: str
    performance: Mapping[str, Performance]
    model_file: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _name(self.name, "model name")
        where = f"model {self.name!r}"
        object.__setattr__(self, "rate_rps", as_number(self.rate_rps, f"{where}: rate_rps", positive=True))
        object.__setattr__(self, "slo_ms", as_number(self.slo_ms, f"{where}: slo_ms", positive=True))
        if self.slo not in SLO_FACTOR:
            raise ValidationError(f"{where}: slo must be one of {', '.join(SLO_FACTOR)}, got {self.slo!r}")
        if not isinstance(self.performance, Mapping) or not self.performance:
            raise ValidationError(f"{where}: performance must name at least one GPU type")
        for key, perf in self.performance.items():
            if not isinstance(perf, Performance):
                raise ValidationError(f"{where}: performance[{key!r}] must be a Performance")
        object.__setattr__(self, "performance", MappingProxyType(dict(self.performance)))


@dataclass(frozen=True)
class Colocation:
    """Slowdown factors of co-located instances.

    An instance of model ``a`` on a GPU (or slice) shared with other instances runs ``s`` times slower,
    ``s = 1 + Σ_other instances (f - 1)``, where ``f`` is the measured factor of the pair (``a``, other model) on
    that GPU type when ``pairs`` has it (a pair may name one model twice: a second instance of the same model),
    else ``default_slowdown``. The default 2.0 is time sharing: two instances each get half the GPU.
    """

    default_slowdown: float = 2.0
    pairs: Mapping[tuple[str, str, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_slowdown", as_number(self.default_slowdown, "colocation.default_slowdown",
                                                               minimum=1.0))
        table = {}
        for (a, b, gpu), f in dict(self.pairs).items():
            f = as_number(f, f"colocation pair {a}/{b} on {gpu}: slowdown", minimum=1.0)
            key = (min(a, b), max(a, b), gpu)
            if key in table and table[key] != f:
                raise ValidationError(f"colocation pair {a}/{b} on {gpu}: given twice with different slowdowns")
            table[key] = f
        object.__setattr__(self, "pairs", MappingProxyType(table))

    def factor(self, a: str, b: str, gpu_type: str) -> tuple[float, bool]:
        """(factor, measured?) of an instance of ``a`` next to one of ``b`` on ``gpu_type``."""
        key = (min(a, b), max(a, b), gpu_type)
        if key in self.pairs:
            return self.pairs[key], True
        return self.default_slowdown, False


@dataclass(frozen=True)
class FleetPlacement:
    """One model's instances on one physical GPU (or one MIG slice of it)."""

    model: str
    gpu_type: str
    gpu_index: int
    mig_profile: str | None
    slice_index: int | None
    instances: int
    batch_size: int
    capacity_rps: float
    latency_ms: float
    memory_mb: float
    slowdown: float
    slowdown_source: str
    co_located: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class FleetGpu:
    """One used physical GPU."""

    gpu_type: str
    gpu_index: int
    node: int
    mig_layout: tuple[str, ...] | None

    def to_dict(self) -> dict[str, Any]:
        return {"gpu_type": self.gpu_type, "gpu_index": self.gpu_index, "node": self.node,
                "mig_layout": list(self.mig_layout) if self.mig_layout is not None else None}


@dataclass(frozen=True)
class FleetPlan:
    """A fleet plan: every placement, every used GPU, and the objective recomputed from them.

    ``proven_optimal`` is False when the plan came from a restricted pattern set or a heuristic; ``notes`` says
    which assumptions were used (default slowdowns, scaled MIG latencies, pattern caps). ``lower_bound`` is a
    proven lower bound on the optimal objective (None when none was proven) and ``gap`` the relative gap
    ``(objective - lower_bound) / objective``.
    """

    placements: tuple[FleetPlacement, ...]
    gpus: tuple[FleetGpu, ...]
    cost_per_hour: float
    gpu_count: int
    objective: float
    rates: Mapping[str, float] = field(default_factory=dict, compare=False)
    headroom: float = 0.0
    notes: tuple[str, ...] = ()
    proven_optimal: bool = True
    lower_bound: float | None = None
    gap: float | None = None

    def capacity(self) -> dict[str, float]:
        """Model -> total capacity (RPS) over its placements."""
        out: dict[str, float] = {}
        for p in self.placements:
            out[p.model] = out.get(p.model, 0.0) + p.capacity_rps
        return out

    def predictions(self) -> dict[str, dict[str, Any]]:
        """Per model: rate, required and planned capacity, worst latency per batch, batch sizes, placements."""
        caps = self.capacity()
        out: dict[str, dict[str, Any]] = {}
        for name, rate in self.rates.items():
            mine = [p for p in self.placements if p.model == name]
            out[name] = {
                "rate_rps": rate,
                "required_rps": rate * (1 + self.headroom),
                "capacity_rps": caps.get(name, 0.0),
                "latency_ms": max((p.latency_ms for p in mine), default=0.0),
                "batch_sizes": sorted({p.batch_size for p in mine}),
                "instances": sum(p.instances for p in mine),
                "placements": len(mine),
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        """The ``plan`` object of ``servopt solve --json``."""
        return {
            "cost_per_hour": self.cost_per_hour,
            "gpu_count": self.gpu_count,
            "objective": self.objective,
            "proven_optimal": self.proven_optimal,
            "lower_bound": self.lower_bound,
            "gap": self.gap,
            "gpus": [g.to_dict() for g in self.gpus],
            "placements": [p.to_dict() for p in self.placements],
            "predictions": self.predictions(),
            "notes": list(self.notes),
        }

    def to_table(self) -> str:
        """The plan for people."""
        rows = [(p.model, p.gpu_type, p.gpu_index, p.mig_profile or "-", "-" if p.slice_index is None else
                 p.slice_index, p.batch_size, p.instances, round(p.capacity_rps, 3), round(p.latency_ms, 4),
                 round(p.slowdown, 4), p.slowdown_source, ",".join(p.co_located) or "-")
                for p in self.placements]
        text = format_table(("model", "gpu_type", "gpu", "mig", "slice", "batch", "inst", "capacity_rps",
                             "latency_ms", "slowdown", "source", "co_located"), rows)
        lines = [text, f"GPUs {self.gpu_count}; cost {self.cost_per_hour:.6g}/h; objective {self.objective:.6g}"
                 + ("" if self.proven_optimal else " (not proven optimal)")
                 + ("" if self.lower_bound is None else f"; lower bound {self.lower_bound:.6g}")]
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)
