"""Write the IPA pipeline examples (examples/pipeline_*.yaml) from IPA's published data in data/ipa.

    python examples/build_ipa_examples.py            # rewrites the three files next to this script
    python examples/build_ipa_examples.py --check    # exit 1 if the committed files differ from a rebuild
    python examples/build_ipa_examples.py --quirks   # markdown: IPA's queue-term bug vs servopt, video example

IPA's raw profiles are not public (a GCS zip); what is public are accuracies (``accuracies.yaml``), fragments of
profiling tables printed in notebooks (``profiles/*.csv``) and the ResNet motivation figure
(``fig2_resnet_motivation.csv``). Which rows are used, and how gaps are filled, is stated per variant below and
in a comment above every variant in the generated files. Rules:

* latency is the measured **average** latency per batch (``model_latencies_avg``): it is the one statistic
  present for every measured variant (IPA itself uses p99, absent for yolov5x and resnet34);
* throughput is left to its default, batch / latency: IPA's measured ``throughput_max`` saturates at the
  offered load (about 20 RPS), as data/README.md warns;
* cores per replica are those the row was measured at (IPA's "base allocation" idea);
* a variant between two measured neighbours gets, per batch size, the geometric mean of their latencies and
  the geometric mean of their cores (yolov5s between n and m; yolov5l between m and x);
* a missing batch size of a measured variant comes from its own two measured sizes on a power law
  l(b) = l(1) b^p (yolov5m, b = 2), or from the batch ratios l(b)/l(1) measured on its siblings (geometric
  mean of resnet18's and resnet34's ratios, for resnet50/101/152);
* a missing batch-1 latency is scaled from the nearest measured sibling by the latency ratio of IPA's
  motivation figure (resnet50 from resnet34 x 135/110, resnet101 from resnet152 x 240/300).

The NLP pipeline (language id -> translation -> summarisation, IPA's ``nlp``) uses batch 1 only where only
batch 1 was profiled (translation, summarisation), as IPA's own nlp configuration does (``batching_cap: 1``).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from _write import write_or_check  # examples/_write.py (this folder is sys.path[0] when run as a script)

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "ipa"


def _rows(name: str) -> list[dict[str, str]]:
    with open(DATA / "profiles" / name, newline="") as fh:
        return list(csv.DictReader(fh))


def _avg_ms(name: str, variant: str, batch: int, cores: int, load: int) -> float:
    """``model_latencies_avg`` (seconds in the file) of one row, in ms; the row must exist exactly once."""
    hits = [r for r in _rows(name) if r["model_variant"] == variant and int(r["max_batch_size"]) == batch
            and int(r["cpu_request"]) == cores and int(r["load"]) == load]
    if len(hits) != 1:
        raise SystemExit(f"{name}: expected one row for {variant} b{batch} cpu{cores} load{load}, got {len(hits)}")
    return float(hits[0]["model_latencies_avg"]) * 1000.0


def _accuracies() -> dict[str, dict[str, dict[str, float]]]:
    import yaml

    return yaml.safe_load((DATA / "accuracies.yaml").read_text())


def _fig2_latency_ms() -> dict[str, float]:
    with open(DATA / "fig2_resnet_motivation.csv", newline="") as fh:
        return {r["variant"]: float(r["latency_ms"]) for r in csv.DictReader(fh)}


def _geo(a: float, b: float) -> float:
    return math.sqrt(a * b)


def video_variants() -> dict[str, list[dict]]:
    """Stage -> variants, each {name, accuracy, cores, batches: {b: latency_ms}, note}."""
    acc = _accuracies()["video"]
    s70, s71, t1, s74 = ("series-70-yolo_cell5.csv", "series-71-yolo-final_cell5.csv", "table-1_cell2.csv",
                         "series-74-yolo_cell5.csv")
    n = {b: _avg_ms(s70, "yolov5n", b, 1, 20) for b in (1, 2, 8)}
    m1, m8 = _avg_ms(s71, "yolov5m", 1, 1, 20), _avg_ms(t1, "yolov5m", 8, 1, 20)
    p = math.log(m8 / m1) / math.log(8)
    m = {1: m1, 2: m1 * 2**p, 8: m8}
    x = {b: _avg_ms(s74, "yolov5x", b, 4, 20) for b in (1, 2, 8)}
    yolo = [
        ("yolov5n", 1, n, "series-70 (1 core, load 20) b1/b2/b8"),
        ("yolov5s", 1, {b: _geo(n[b], m[b]) for b in n}, "not profiled: geometric mean of yolov5n and yolov5m"),
        ("yolov5m", 1, m, f"series-71 b1 and table-1 b8 (1 core, load 20); b2 on l(1)*b^{p:.3f}"),
        ("yolov5l", 2, {b: _geo(m[b], x[b]) for b in m},
         "not profiled: geometric mean of yolov5m (1 core) and yolov5x (4 cores), 2 cores"),
        ("yolov5x", 4, x, "series-74 (4 cores, load 20) b1/b2/b8"),
    ]
    s732, s200, s72 = "series-73-2-throughput-resnet_cell7.csv", "series-200-throughput-test_cell8.csv", \
        "series-72-resnet-final_cell6.csv"
    r18 = {b: _avg_ms(s732, "resnet18", b, 2, 40) for b in (1, 2, 8)}
    r34 = {b: _avg_ms(s200, "resnet34", b, 2, 40) for b in (1, 2, 8)}
    ratio = {b: _geo(r18[b] / r18[1], r34[b] / r34[1]) for b in (1, 2, 8)}
    fig2 = _fig2_latency_ms()
    r152_1 = float(next(r for r in _rows(s72) if r["model_variant"] == "resnet152")["model_latencies_avg"]) * 1000
    r50_1 = r34[1] * fig2["resnet50"] / fig2["resnet34"]
    r101_1 = r152_1 * fig2["resnet101"] / fig2["resnet152"]
    spread = "b2/b8 from the mean batch ratios of resnet18 and resnet34"
    resnet = [
        ("resnet18", 2, r18, "series-73-2 (2 cores, load 40) b1/b2/b8"),
        ("resnet34", 2, r34, "series-200 (2 cores, load 40) b1/b2/b8"),
        ("resnet50", 2, {b: r50_1 * ratio[b] for b in ratio}, f"b1 = resnet34 x fig2 135/110 ms; {spread}"),
        ("resnet101", 2, {b: r101_1 * ratio[b] for b in ratio}, f"b1 = resnet152 x fig2 240/300 ms; {spread}"),
        ("resnet152", 2, {b: r152_1 * ratio[b] for b in ratio}, f"b1 series-72 (2 cores, load 20); {spread}"),
    ]
    return {
        "detect": [dict(name=v, accuracy=acc["crop"][v] / 100, cores=c, batches=lat, note=note)
                   for v, c, lat, note in yolo],
        "classify": [dict(name=v, accuracy=acc["classification"][v] / 100, cores=c, batches=lat, note=note)
                     for v, c, lat, note in resnet],
    }


def nlp_variants() -> dict[str, list[dict]]:
    acc = _accuracies()["nlp"]
    li_name = "dinalzein-xlm-roberta-base-finetuned-language-identification"
    li = {b: _avg_ms("series-98-li_cell6.csv", li_name, b, 1, 20) for b in (1, 2, 4, 8)}
    trans = []
    for name in acc["nlp-trans"]:
        trans.append(dict(name=name, accuracy=acc["nlp-trans"][name] / 100, cores=2,
                          batches={1: _avg_ms("series-99-trans_cell6.csv", name, 1, 2, 10)},
                          note="series-99 (2 cores, load 10) b1"))
    summ = []
    for name in acc["nlp-sum"]:
        summ.append(dict(name=name, accuracy=acc["nlp-sum"][name] / 100, cores=2,
                         batches={1: _avg_ms("series-97-sum_cell6.csv", name, 1, 2, 10)},
                         note="series-97 (2 cores, load 10) b1"))
    return {
        "language-id": [dict(name=li_name, accuracy=acc["nlp-li"][li_name] / 100, cores=1, batches=li,
                             note="series-98 (1 core, load 20) b1/b2/b4/b8")],
        "translate": trans,
        "summarize": summ,
    }


#: stage -> the small ONNX model (examples/build_models.py) with that stage's tensors, served for every variant
MODEL_FILES = {"detect": "models/detector.onnx", "classify": "models/roi_classifier.onnx",
               "language-id": "models/language_id.onnx", "translate": "models/translate.onnx",
               "summarize": "models/summarize.onnx"}


def render(header: str, settings: dict, stages: dict[str, list[dict]], current: dict[str, tuple[str, int]],
           triton: list[str] | None = None) -> str:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines.append("problem: pipeline")
    for key, value in settings.items():
        lines.append(f"{key}: {value}")
    lines += triton or []
    lines.append("stages:")
    for stage, variants in stages.items():
        lines.append(f"  - name: {stage}")
        if stage in current:
            variant, batch = current[stage]
            lines.append(f"    current: {{variant: {variant}, batch_size: {batch}}}")
        lines.append("    variants:")
        for v in variants:
            lines.append(f"      # {v['note']}")
            lines.append(f"      - name: {v['name']}")
            lines.append(f"        accuracy: {round(v['accuracy'], 6)}")
            lines.append(f"        cores: {v['cores']}")
            lines.append(f"        model_file: {MODEL_FILES[stage]}")
            lines.append("        batches:")
            for b, lat in v["batches"].items():
                lines.append(f"          {b}: {{latency_ms: {round(lat, 2)}}}")
    return "\n".join(lines) + "\n"


HEADER = """{title}
Generated by examples/build_ipa_examples.py from IPA's public data (data/ipa): accuracies.yaml and
the profile fragments named per variant; average latency per batch, throughput = batch / latency (default).
Weights as in IPA's {config}. Run: servopt solve examples/{file}"""


#: Triton: tensors come from the model files; the classifier takes the ensemble's IMAGE and the detector's BOXES
#: by name (SCORES feeds nothing), the summariser takes the translation's token ids (an explicit connect:)
VIDEO_TRITON = ["# Triton (servopt solve FILE --out DIR): tensors from each model_file; stages wired by tensor name"]
NLP_TRITON = ["# Triton: translate takes the ensemble's input_ids and language-id's language by name; summarize",
              "# takes translate's output_ids as its input_ids",
              "triton:",
              "  models:",
              "    summarize: {connect: {input_ids: output_ids}}"]


def build() -> dict[str, str]:
    video = video_variants()
    nlp = nlp_variants()
    start = {"detect": ("yolov5n", 1), "classify": ("resnet18", 1)}  # IPA's initial_active_model / batch
    out = {}
    common = {"workload_rps": 20, "sla_ms": 2000, "alpha": 2, "beta": 1, "delta": "0.000001"}
    out["pipeline_video.yaml"] = render(
        HEADER.format(title="IPA video pipeline: YOLOv5 n..x -> ResNet 18..152, sum of rank-normalised accuracies.",
                      config="video-1.yaml (alpha 2, beta 1, gamma 1e-6)", file="pipeline_video.yaml"),
        {**common, "accuracy": "sum", "normalize": "rank", "max_replicas": 100}, video, start, VIDEO_TRITON)
    out["pipeline_video_product.yaml"] = render(
        HEADER.format(title="IPA video pipeline with the exact product of raw accuracies (IPA's JSys revision).",
                      config="video-mul-1.yaml (multiply, normalize_accuracy false)",
                      file="pipeline_video_product.yaml"),
        {**common, "accuracy": "product", "normalize": "none", "max_replicas": 100}, video, start, VIDEO_TRITON)
    out["pipeline_nlp.yaml"] = render(
        HEADER.format(title="IPA nlp pipeline: language identification -> fr-en translation -> summarisation.",
                      config="sample-nlp.yaml (alpha 10, beta 0.5, gamma 1e-6)", file="pipeline_nlp.yaml"),
        {"workload_rps": 10, "sla_ms": 1500, "alpha": 10, "beta": 0.5, "delta": "0.000001", "accuracy": "sum",
         "normalize": "rank", "max_replicas": 100},
        nlp, {}, NLP_TRITON)
    return out


def ipa_queue_bug(problem) -> tuple[list[tuple[str, int, int]], float, float]:
    """The decision IPA's code makes, by enumeration: its queue term is applied to the 0/1 batch indicator, which
    loosens the SLA by sum_s |M_s| (|B| - 1) / λ seconds and drops (b - 1)/λ. Returns (choices, objective, the
    true end-to-end latency of those choices with the queueing delay)."""
    import itertools

    import numpy as np

    o = problem.options()
    n_batches = len({int(b) for b in o.batch_size})
    loosen_ms = 1000.0 * sum(len(s.variants) * (n_batches - 1) for s in problem.stages) / problem.workload_rps
    best = None
    for combo in itertools.product(*[np.arange(sl.start, sl.stop)[o.feasible[sl]] for sl in o.stage_slices]):
        if sum(o.latency_ms[i] for i in combo) <= problem.sla_ms + loosen_ms:
            value = float(sum(o.value[i] for i in combo))
            if best is None or value > best[0]:
                best = (value, combo)
    value, combo = best
    true = float(sum(o.latency_ms[i] + o.queue_ms[i] for i in combo))
    names = [(problem.stages[k].variants[int(o.variant[i])].name, int(o.batch_size[i]), int(o.replicas[i]))
             for k, i in enumerate(combo)]
    return names, value, true


def quirks() -> str:
    """Markdown table: IPA's decision (queue bug) and servopt's on the video example, per SLA and load."""
    import servopt

    base = servopt.load_problem(HERE / "pipeline_video.yaml").update(current={})
    rows = ["| SLA ms | RPS | IPA's code: detect, classify (batch) | its true latency ms | servopt | latency ms |",
            "|---|---|---|---|---|---|"]

    def show(choices):
        return ", ".join(f"{v} (b{b}, x{n})" for v, b, n in choices)

    for sla in (500.0, 1000.0):
        for lam in (5.0, 10.0, 20.0, 40.0):
            p = base.update(workload_rps=lam, sla_ms=sla)
            choices, _, true = ipa_queue_bug(p)
            plan = servopt.solve(p, "highs").plan
            mine = [(s.variant, s.batch_size, s.replicas) for s in plan.stages]
            flag = " **> SLA**" if true > sla else ""
            rows.append(f"| {sla:g} | {lam:g} | {show(choices)} | {true:.0f}{flag} | {show(mine)} | "
                        f"{plan.latency_ms:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    parser.add_argument("--quirks", action="store_true", help="print IPA's queue-bug decisions next to servopt's")
    args = parser.parse_args(argv)
    if args.quirks:
        print(quirks())
        return 0
    return write_or_check(build(), HERE, "build_ipa_examples.py", args.check)


if __name__ == "__main__":
    sys.exit(main())
