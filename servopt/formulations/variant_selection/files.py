"""Problem files for ``variant_selection`` (the inline form of SPEC §5, or capacities from a profile).

Every error names the file and the key path (``variants[2].capacity[4]``) and says what is accepted; unknown keys
are rejected. Capacities may come from a profile instead of inline tables::

    profiles: ../data/infadapter/capacity_result_Feb_21.csv   # relative to the YAML file
    performance: {mode: fit, headroom: 0.8, sla_ms: 750}   # mode: table (profiled points) | fit (line)
    where: {memory_limit: 4Gi}   # optional: label column -> value (or a list: one of) selecting profile rows
    # optional: cores: [2, 3, ..., 20] (the counts to offer; default the profiled ones); per variant
    # profile_variant: <name in the profile> (default: the variant's name, e.g. resnet18)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError
from servopt.fields import Fields, check_int, check_number, model_file
from servopt.formulations.variant_selection.problem import VariantSelection
from servopt.formulations.variant_selection.types import Variant

from servopt.formulations.ties import common_file_keys

__all__ = ["from_mapping"]


def from_mapping(data: Mapping[str, Any], source: str | Path) -> Any:
    """Validate a ``variant_selection`` mapping into a ``VariantSelection``."""
    source = Path(source)
    f = Fields(data, source)
    common = common_file_keys(f, source)
    if f.has("latency_quantile"):
        raise f.error("latency_quantile", "variant_selection plans on capacities (RPS per core count within the "
                                          "SLA), which have no latency prediction interval here; latency_quantile "
                                          "applies to min_gpus, max_throughput and fleet problems with fitted "
                                          "latencies")
    lam = f.number("workload_rps", positive=True)
    budget = f.int("core_budget", minimum=1)
    weights = {k: f.number(k, d, minimum=0.0) for k, d in (("alpha", 1.0), ("beta", 0.05), ("gamma", 0.001))}
    profile_capacity = _profile_capacity(f, source)
    entries = f.list("variants")
    variants = []
    for i, entry in enumerate(entries):
        v = Fields(entry, source, f"variants[{i}]")
        name = v.str("name")
        capacity = _capacity(v, name, profile_capacity)
        min_cores = v.int("min_cores", 1, minimum=1)
        max_cores = v.int("max_cores", None, minimum=min_cores)
        try:
            variants.append(Variant(
                name=name,
                accuracy=v.number("accuracy", minimum=0.0, maximum=1.0),
                capacity=capacity,
                load_time_s=v.number("load_time_s", 0.0, minimum=0.0),
                current_cores=v.int("current_cores", 0, minimum=0),
                min_cores=min_cores,
                max_cores=max_cores,
                model_file=model_file(v, "model_file", source.parent),
            ))
        except ValidationError as exc:
            if str(exc).startswith(f"{source}:"):  # already names the file and key
                raise
            raise ValidationError(f"{source}: key 'variants[{i}]': {exc}") from None
        v.done()
    f.done()
    try:
        return VariantSelection(workload_rps=lam, core_budget=budget, variants=variants, **weights, **common)
    except ValidationError as exc:
        raise ValidationError(f"{source}: {exc}") from None


def _capacity(v: Fields, name: str, profile_capacity: Any) -> dict[int, float]:
    if not v.has("capacity"):
        if profile_capacity is None:
            raise v.error("capacity", "missing (required unless the problem gives `profiles:`)")
        return profile_capacity(v, name)
    table = v.mapping("capacity")
    out: dict[int, float] = {}
    for cores, rps in table.items():
        where = f"capacity[{cores}]"
        cores = check_int(cores, lambda what: v.error(where, f"core count: {what}"), minimum=1)
        out[cores] = check_number(rps, lambda what: v.error(where, what), minimum=0.0)
    if not out:
        raise v.error("capacity", "expected a non-empty mapping cores -> RPS")
    return out


def _profile_capacity(f: Fields, source: Path) -> Any:
    """A function (variant fields, name) -> capacity table read from ``profiles:``, or None."""
    path = f.str("profiles", None)
    perf = f.mapping("performance", None)
    where = f.raw("where", None)
    if where is not None or path is not None:  # servopt.profiles brings pandas: only for files that need it
        from servopt.profiles import read_where

        where = read_where(where, str(source))
    if path is None:
        if perf is not None:
            raise f.error("performance", "only allowed together with `profiles:`")
        if where:
            raise f.error("where", "only allowed together with `profiles:` (it selects profile rows by label)")
        return None
    p = Fields(perf or {}, source, "performance")
    mode = p.str("mode", "table", choices=("table", "fit"))
    headroom = p.number("headroom", 1.0 if mode == "table" else 0.8, positive=True, maximum=1.0)
    sla_ms = p.number("sla_ms", 750.0, positive=True)
    curve = p.str("curve", "line", choices=("line", "average"))
    if curve != "line" and mode != "fit":
        raise p.error("curve", "only used with mode: fit")
    counts = p.list("cores", None)
    if counts is not None:
        counts = [check_int(c, lambda what: p.error("cores", what), minimum=1) for c in counts]
    p.done()
    full = (source.parent / path) if not Path(path).is_absolute() else Path(path)
    try:
        from servopt.performance import capacity_table
        from servopt.profiles import read_infadapter_capacity
    except ImportError as exc:  # pragma: no cover - both modules ship with servopt
        raise f.error("profiles", f"profile-backed capacity is unavailable in this build ({exc})") from None
    try:
        frame = read_infadapter_capacity(full, sla_ms)
    except ValidationError as exc:
        raise f.error("profiles", str(exc)) from None

    def lookup(v: Fields, name: str) -> dict[int, float]:
        key = v.str("profile_variant", name)
        try:
            table = capacity_table(frame, variant=key, mode=mode, headroom=headroom, cores=counts, source=str(full),
                                   curve=curve, where=where)
        except ValidationError as exc:
            if where:  # the rows come from profile_variant and where:, so name the entry, not one key
                raise ValidationError(f"{source}: key '{v.prefix}': {exc} (rows selected by profile_variant "
                                      "and where:)") from None
            raise v.error("profile_variant", str(exc)) from None
        return {int(k): float(r) for k, r in dict(table).items()}

    return lookup
