"""Problem files for ``pipeline`` (the inline form of SPEC §5).

Every error names the file and the key path (``stages[1].variants[0].batches[4]``) and says what is accepted;
unknown keys are rejected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError
from servopt.fields import MAX_EXACT_INT, Fields, check_int, model_file
from servopt.formulations.pipeline.problem import Pipeline
from servopt.formulations.pipeline.types import (
    ACCURACY_METHODS,
    NORMALIZATIONS,
    BatchProfile,
    Stage,
    StageDeployment,
    StageVariant,
)

from servopt.formulations.ties import common_file_keys

__all__ = ["from_mapping"]


def from_mapping(data: Mapping[str, Any], source: str | Path) -> Any:
    """Validate a ``pipeline`` mapping into :class:`~servopt.formulations.pipeline.problem.Pipeline`."""
    source = Path(source)
    f = Fields(data, source)
    common = common_file_keys(f, source)
    if f.has("latency_quantile"):
        raise f.error("latency_quantile", "pipeline stages take inline batches: tables, which have no prediction "
                                          "interval; latency_quantile applies to min_gpus, max_throughput and fleet "
                                          "problems with fitted latencies")
    fields: dict[str, Any] = {
        "workload_rps": f.number("workload_rps", positive=True),
        "sla_ms": f.number("sla_ms", positive=True),
        "alpha": f.number("alpha", 2.0, minimum=0.0),
        "beta": f.number("beta", 1.0, minimum=0.0),
        "delta": f.number("delta", 1e-6, minimum=0.0),
        "accuracy": f.str("accuracy", "sum", choices=ACCURACY_METHODS),
        "normalize": f.str("normalize", None, choices=NORMALIZATIONS),
        "max_replicas": f.int("max_replicas", 100, minimum=1),
    }
    stages, current = [], {}
    for si, entry in enumerate(f.list("stages")):
        sf = Fields(entry, source, f"stages[{si}]")
        stage_name = sf.str("name")
        variants = []
        for vi, ventry in enumerate(sf.list("variants")):
            vf = Fields(ventry, source, f"stages[{si}].variants[{vi}]")
            batches = []
            for b, point in vf.mapping("batches").items():
                plain = _plain_point(b, point)
                if plain is not None:
                    batches.append(plain)
                    continue
                where = f"batches[{b}]"
                b = check_int(b, lambda what: vf.error(where, f"batch size: {what}"), minimum=1)
                pf = Fields(point, source, f"{vf.prefix}.batches[{b}]")
                lat = pf.number("latency_ms", positive=True)
                thr = pf.number("throughput_rps", None, positive=True)
                pf.done()
                batches.append(BatchProfile(b, lat, thr))
            if not batches:
                raise vf.error("batches", "expected at least one batch size")
            try:
                variants.append(StageVariant(vf.str("name"), vf.number("accuracy", minimum=0.0, maximum=1.0), vf.number("cores", positive=True),
                                             batches, model_file=model_file(vf, "model_file", source.parent)))
            except ValidationError as exc:
                if str(exc).startswith(f"{source}:"):  # already names the file and key
                    raise
                raise ValidationError(f"{source}: key '{vf.prefix}': {exc}") from None
            vf.done()
        cur = sf.mapping("current", None)
        if cur is not None:
            cf = Fields(cur, source, f"stages[{si}].current")
            current[stage_name] = StageDeployment(cf.str("variant"), cf.int("batch_size", minimum=1),
                                                  cf.int("replicas", None, minimum=1))
            cf.done()
        sf.done()
        try:
            stages.append(Stage(stage_name, variants))
        except ValidationError as exc:
            if str(exc).startswith(f"{source}:"):  # already names the file and key
                raise
            raise ValidationError(f"{source}: key 'stages[{si}]': {exc}") from None
    f.done()
    try:
        return Pipeline(stages=stages, current=current or None, **fields, **common)
    except ValidationError as exc:
        raise ValidationError(f"{source}: {exc}") from None


def _plain_point(b: Any, point: Any) -> BatchProfile | None:
    """``{latency_ms: x}`` (and optionally ``throughput_rps``) with an int batch size and positive float values,
    read without the per-key machinery (a 50 x 50 x 7 file has 17,500 of them); None for anything else, which
    the general path reads or refuses with its precise error."""
    if type(b) is not int or not 1 <= b <= MAX_EXACT_INT or type(point) is not dict:
        return None
    lat = point.get("latency_ms")
    thr = point.get("throughput_rps")
    if len(point) != 1 + (thr is not None) or type(lat) is not float or not 0.0 < lat < math.inf:
        return None
    if thr is not None and (type(thr) is not float or not 0.0 < thr < math.inf):
        return None
    return BatchProfile.checked(b, lat, thr)
