"""A ``--quick`` benchmark run never writes into benchmarks/results or docs/img (the committed results).

Every script under ``benchmarks/`` with a ``--quick`` resolves its output folder through ``_util.output_dir`` (a new
temporary folder unless one is given) and the docs' image copy through ``_util.image_dir`` (none); the cheap ones
run for real, as their docstrings show them (``python benchmarks/X.py --quick``) and through ``servopt bench``,
with the committed files hashed before and after.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from servopt.cli import main
from servopt.cli.bench import BENCHMARKS, output_folder

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
COMMITTED = (BENCH / "results", ROOT / "docs" / "img")

#: every script with a --quick: the output flag its main() resolves, and whether it also copies a PNG for the docs
QUICK_SCRIPTS = {
    "bench_capacity.py": ("--out", False),
    "bench_fleet.py": ("--out", False),
    "bench_gpus.py": ("--out", False),
    "bench_models.py": ("--out-dir", True),
    "bench_pipeline.py": ("--out", False),
    "bench_prediction.py": ("--out", False),
    "bench_scale.py": ("--out", False),
    "bench_simulate.py": ("--out", True),
    "bench_tail.py": ("--out", False),
    "bench_variants.py": ("--out", False),
    "fit_speed_check.py": ("--out", False),
    "flops_poly.py": ("--out-dir", False),
    "fresh_cpu.py": ("--out-dir", False),
    "interval_coverage.py": ("--out-dir", False),
    "max_batch_check.py": ("--out-dir", True),
    "warmup_features.py": ("--out-dir", True),
    "work_graph.py": ("--out-dir", False),
}
#: scripts whose quick run resolves its folder otherwise (tested on its own below)
OWN_LOGIC = {"onnx_chain.py"}


def snapshot() -> dict[str, tuple[int, int, str]]:
    """Path -> (size, mtime in ns, SHA-256) of every file under the committed folders."""
    got = {}
    for folder in COMMITTED:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                st = path.stat()
                got[str(path.relative_to(ROOT))] = (st.st_size, st.st_mtime_ns,
                                                    hashlib.sha256(path.read_bytes()).hexdigest())
    return got


def changes(before: dict, after: dict) -> list[str]:
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


@pytest.fixture
def committed_untouched():
    """Fails the test if any committed result or docs image was written, added or removed while it ran."""
    before = snapshot()
    yield
    assert changes(before, snapshot()) == [], "a quick run wrote into benchmarks/results or docs/img"


@pytest.fixture
def tmp_temp(tmp_path, monkeypatch):
    """New temporary folders (this process's and its children's) go under ``tmp_path``."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def load(script: str):
    spec = importlib.util.spec_from_file_location(f"quick_outputs_{Path(script).stem}", BENCH / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_script_with_quick_is_covered():
    with_quick = {p.name for p in BENCH.glob("*.py") if re.search(r"add_argument\(\s*\"--quick\"", p.read_text())}
    assert with_quick == set(QUICK_SCRIPTS) | OWN_LOGIC


def test_output_dir_quick_is_a_new_temporary_folder_unless_given(tmp_temp):
    sys.path.insert(0, str(BENCH))
    try:
        import _util
    finally:
        sys.path.remove(str(BENCH))
    first = _util.output_dir(None, quick=True, name="demo")
    second = _util.output_dir(None, quick=True, name="demo")
    assert first != second and first.is_dir() and first.parent == tmp_temp
    assert _util.output_dir(None, quick=False, name="demo") == _util.RESULTS
    # an explicit folder is used as it is, the committed one included
    assert _util.output_dir(_util.RESULTS, quick=True, name="demo") == _util.RESULTS
    assert _util.output_dir(str(tmp_temp / "x"), quick=True, name="demo") == tmp_temp / "x"
    assert _util.image_dir(None, quick=True) is None
    assert _util.image_dir(None, quick=False) == ROOT / "docs" / "img"
    assert _util.image_dir(tmp_temp, quick=True) == tmp_temp


class _Resolved(Exception):
    """Raised by the stand-in resolvers: the script's measurements never start."""


@pytest.mark.parametrize("script", sorted(QUICK_SCRIPTS))
def test_quick_resolves_to_a_temporary_folder_before_writing(script, monkeypatch, tmp_path, committed_untouched):
    """main(["--quick"]) asks output_dir (and image_dir) with nothing given, before it measures or writes."""
    flag, copies_png = QUICK_SCRIPTS[script]
    module = load(script)
    calls = []

    def fake_output_dir(given, *, quick, name, flag="--out"):
        calls.append(("out", given, quick, flag))
        if not copies_png:
            raise _Resolved
        return tmp_path

    def fake_image_dir(given, *, quick):
        calls.append(("img", given, quick))
        raise _Resolved

    monkeypatch.setattr(module, "output_dir", fake_output_dir)
    if copies_png:
        monkeypatch.setattr(module, "image_dir", fake_image_dir)
    with pytest.raises(_Resolved):
        module.main(["--quick"])
    assert calls[0] == ("out", None, True, flag)
    if copies_png:
        assert calls[1] == ("img", None, True)


def test_onnx_chain_quick_writes_its_csvs_to_the_work_folder(tmp_temp, monkeypatch, committed_untouched):
    module = load("onnx_chain.py")
    monkeypatch.setattr(module, "run_chain", lambda out, runs, quick: ([{"plan": "p"}], [{"point": 1}], []))
    monkeypatch.setattr(module, "markdown", lambda plans, profiles: "")
    monkeypatch.setattr(module, "plot", lambda *a: pytest.fail("a quick run draws no PNG"))
    assert module.main(["--quick"]) == 0
    written = sorted(p.name for p in tmp_temp.rglob("onnx_chain*.csv"))
    assert written == ["onnx_chain.csv", "onnx_chain_profiles.csv"]


def _written_to(stderr: str) -> Path:
    found = re.findall(r"--quick: writing to (\S+)", stderr)
    assert len(found) == 1, stderr[-2000:]
    return Path(found[0])


@pytest.mark.parametrize(("script", "files"), [
    ("bench_tail.py", {"tail.csv", "tail_summary.csv", "tail.png"}),
    ("bench_simulate.py", {"simulate.csv", "simulate_md1.csv", "simulate.png"}),
    ("bench_fleet.py", {"fleet.csv", "fleet.png"}),
    ("bench_prediction.py", {"prediction.csv", "prediction.png"}),
])
def test_documented_quick_command_writes_only_to_a_temporary_folder(script, files, tmp_temp, committed_untouched):
    env = {**os.environ, "TMPDIR": str(tmp_temp), "SERVOPT_PROGRESS": "0"}
    done = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = _written_to(done.stderr)
    assert folder.parent == tmp_temp and {p.name for p in folder.iterdir()} == files


def test_servopt_bench_quick_writes_only_to_a_temporary_folder(tmp_temp, capsys, committed_untouched):
    # simulate: the script makes its own temporary folder (servopt bench passes it no --out)
    assert main(["bench", "simulate", "--quick"]) == 0
    # fleet: servopt bench makes the folder and passes it as --out
    assert main(["bench", "fleet", "--quick"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"servopt: --quick writes to \S*servopt-bench-fleet-", err), err[-2000:]
    made = sorted(p.name for p in tmp_temp.iterdir())
    assert [n for n in made if "simulate" in n] and [n for n in made if "fleet" in n]
    assert {p.name for p in tmp_temp.glob("*/*.csv")} >= {"simulate.csv", "simulate_md1.csv", "fleet.csv"}


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_servopt_bench_resolves_quick_to_a_temporary_folder(name, tmp_temp):
    out = output_folder(name, None, quick=True)
    if BENCHMARKS[name].takes_out:
        assert out is not None and Path(out).parent == tmp_temp
        assert Path(output_folder(name, "given", quick=True)) == Path("given")
    else:  # the script resolves it: it must be one of the covered scripts
        assert out is None and BENCHMARKS[name].quick == ("--quick",) and BENCHMARKS[name].script in QUICK_SCRIPTS
    assert output_folder(name, None, quick=False) is None
