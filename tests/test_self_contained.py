"""The project passes its tests in a clone with nothing beside it: no file refers to a directory outside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# built from parts so that this file does not match itself
OUTSIDE = ("../" + "shared", "shared/" + "data", "shared/" + "reference", "shared/" + "SPEC")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".json", ".csv", ".pbtxt", ".sh", ""}


def project_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
        names = [line for line in out.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist): walk the tree
        skip = {".git", ".ci-venv", ".triton-venv", ".venv", "__pycache__", ".hypothesis", ".pytest_cache"}
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.parts)]
    return [ROOT / n for n in names if (ROOT / n).suffix in TEXT_SUFFIXES and (ROOT / n).is_file()]


def test_no_file_refers_outside_the_project() -> None:
    files = project_files()
    assert len(files) > 50  # the walk found the project
    hits = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if any(needle in line for needle in OUTSIDE):
                hits.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()[:100]}")
    assert hits == [], "files refer to data outside the project:\n" + "\n".join(hits)


@pytest.mark.parametrize("name", ["README.md", "infadapter/capacity_result_Feb_21.csv", "twitter_workload_2021-08.tbz2",
                                  "ipa/accuracies.yaml", "published/nvidia_dle_resnet50_pytorch.csv",
                                  "monitor/py_hardware_monitor_schema.csv"])
def test_reference_data_ships_with_the_project(name: str) -> None:
    assert (ROOT / "data" / name).is_file()


def test_every_data_file_has_its_origin_in_the_data_readme() -> None:
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    for path in sorted((ROOT / "data").rglob("*")):
        if path.is_file() and path.name != "README.md":
            rel = path.relative_to(ROOT / "data")
            # a row names the file, or the glob of its folder (ipa/profiles/*.csv)
            assert f"`{rel}`" in readme or f"`{rel.parent}/*" in readme or f"`{rel.parent}/twitter_slice_*" in readme, rel
