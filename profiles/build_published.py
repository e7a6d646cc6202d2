"""Restate NVIDIA's published GPU inference tables in servopt's profile schema.

Reads ``data/published/`` (the project's reference data, never copied into the project) and writes the
profiles shipped in ``profiles/``. Run from the project root::

    python profiles/build_published.py            # rewrite profiles/*.csv
    python profiles/build_published.py --check    # exit 1 if a shipped file differs from what the data gives

Every value is the published one; only names change (see ``profiles/README.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "published"

#: the source's GPU description -> servopt hardware name
HARDWARE = {
    "A100-80GB (1 GPU)": "A100-80GB",
    "V100-16GB (1 GPU)": "V100-16GB",
    "V100-32GB (1 GPU)": "V100-32GB",
    "T4": "T4",
    "NVIDIA A40": "A40",
    "NVIDIA DGX A100 (1x A100 80GB)": "A100-80GB",
    "NVIDIA DGX-1 (1x V100 32GB)": "V100-32GB",
    "NVIDIA T4": "T4",
}
#: the source's precision -> (precision label, variant suffix)
PRECISION = {"TF32": ("TF32", "tf32"), "FP32": ("FP32", "fp32"), "AMP(FP16)": ("AMP", "amp"),
             "FP16": ("FP16", "fp16")}
#: ResNet-50 v1.5's input side; the Triton tables do not give it as a column
RESNET50_INPUT = 224

#: shipped file -> (source file, which models)
OUTPUTS = {
    "nvidia_efficientnet_pytorch.csv": ("nvidia_dle_efficientnet_pytorch.csv", ("efficientnet-b0", "efficientnet-b4")),
    "nvidia_resnet50_triton.csv": ("nvidia_dle_resnet50_triton_offline.csv", None),
    "nvidia_efficientnet_widese_pytorch.csv": ("nvidia_dle_efficientnet_pytorch.csv",
                                               ("efficientnet-widese-b0", "efficientnet-widese-b4")),
    "nvidia_resnet50_pytorch.csv": ("nvidia_dle_resnet50_pytorch.csv", None),
    "nvidia_efficientnet_tf2.csv": ("nvidia_dle_efficientnet_tf2.csv", None),
}


def _lookup(mapping: dict, value: str, what: str, path: Path) -> object:
    if value not in mapping:
        raise SystemExit(f"{path}: unknown {what} {value!r}; add it to profiles/build_published.py")
    return mapping[value]


def restate(path: Path, models: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One published table as a servopt profile frame (canonical columns first)."""
    src = pd.read_csv(path)
    if models is not None:
        src = src[src["model"].isin(models)]
    batch = src["batch"] if "batch" in src else src["client_batch"]
    throughput = src["throughput_img_s"] if "throughput_img_s" in src else src["inferences_per_s"]
    precision = [_lookup(PRECISION, p, "precision", path) for p in src["precision"]]
    out = pd.DataFrame({
        "model": src["model"].to_numpy(),
        "variant": [f"{m}-{p[1]}" for m, p in zip(src["model"], precision)],
        "hardware": [_lookup(HARDWARE, g, "GPU", path) for g in src["gpu"]],
        "input_size": src["input_res"].to_numpy() if "input_res" in src else RESNET50_INPUT,
        "batch_size": batch.to_numpy(),
        "latency_ms": src["lat_avg_ms"].to_numpy(),
        "latency_p99_ms": src["lat_p99_ms"].to_numpy(),
        "throughput_rps": throughput.to_numpy(),
        "source": src["source"].to_numpy(),
        "precision": [p[0] for p in precision],
        "framework": (src["framework"] if "framework" in src else src["server"]).to_numpy(),
    })
    for col in ("lat_p90_ms", "lat_p95_ms"):
        if col in src:
            out[col.replace("lat_", "latency_")] = src[col].to_numpy()
    return out.sort_values(["model", "hardware", "precision", "batch_size"], kind="stable").reset_index(drop=True)


def build_all(data: Path = DATA) -> dict[str, pd.DataFrame]:
    """Every shipped profile, validated, by file name."""
    from servopt.profiles import validate_frame

    return {name: validate_frame(restate(data / src, models), name) for name, (src, models) in OUTPUTS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of the published CSVs")
    parser.add_argument("--out", type=Path, default=ROOT / "profiles", help="where to write the profiles")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    from servopt.profiles import load_profile, write_profile

    status = 0
    for name, frame in build_all(args.data).items():
        target = args.out / name
        if args.check:
            shipped = load_profile(target).frame
            same = shipped.shape == frame.shape and shipped.columns.tolist() == frame.columns.tolist() and all(
                shipped[c].astype(str).tolist() == frame[c].astype(str).tolist() for c in frame.columns)
            print(f"{target}: {'up to date' if same else 'DIFFERS from the published data'}")
            status |= not same
        else:
            write_profile(frame, target)
            print(f"wrote {target} ({len(frame)} rows)")
    return status


if __name__ == "__main__":
    sys.exit(main())
