"""``servopt solve --out``'s errors: one line and exit 2 (a JSON object with ``--json``), nothing left behind.

OS errors while writing (disk full), a target that is the current folder, unreadable ONNX model files (refused
before solving, in every problem kind that takes ``model_file``), one message for an existing
target, and options refused in their own words.
"""

from __future__ import annotations

import copy
import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

import servopt
from servopt.cli import main
from servopt.exceptions import ServoptError, ValidationError
from servopt.formulations.registry import problem_from_mapping

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NLP = EXAMPLES / "pipeline_nlp.yaml"


def _solve(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["solve", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(code: int, out: str, err: str, json_flag: bool) -> str:
    """The message of a refused run: exit 2, one line on stderr, no traceback, the JSON error object on stdout."""
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1 and err.startswith("servopt: error: "), err
    message = err.strip().removeprefix("servopt: error: ")
    if json_flag:
        assert json.loads(out) == {"status": "error", "exit_code": 2, "message": message}
    else:
        assert out == ""
    return message


def _no_solve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make solving fail loudly: a refusal "before solving" must not get there."""
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("solved although the command was refused")

    monkeypatch.setattr(servopt, "solve", boom)


# ---------------------------------------------------------------------------- 1. OS errors while writing --out
@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("json_flag", [False, True])
def test_disk_full_while_copying_a_model_file_is_exit_2_and_leaves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, existing: bool,
        json_flag: bool) -> None:
    import servopt.triton.write as writer

    def full(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer.shutil, "copyfile", full)
    out = tmp_path / "deep" / "repo"
    if existing:
        out.mkdir(parents=True)
        (out / "old.txt").write_text("previous repository")
    argv = [NLP, "--out", out] + (["--force"] if existing else []) + (["--json"] if json_flag else [])
    message = _one_error(*_solve(capsys, *argv), json_flag)
    assert message == f"--out {out}: cannot write the repository: {os.strerror(errno.ENOSPC)} (nothing was written)"
    if existing:  # the old repository is untouched, and no temporary or backup folder is left beside it
        assert [p.name for p in out.iterdir()] == ["old.txt"]
        assert [p.name for p in out.parent.iterdir()] == ["repo"]
    else:  # not even the parent folder it had created
        assert list(tmp_path.iterdir()) == []


def test_write_error_is_a_servopt_error_and_an_os_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library raises it too, for callers that catch OSError or ServoptError."""
    import servopt.triton.write as writer

    def denied(path: Path, text: str) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(writer, "_write_file", denied)
    with pytest.raises(writer.WriteError) as caught:
        writer.write_tree(tmp_path / "r", {"a.txt": "x"}, [], force=False)
    assert isinstance(caught.value, ServoptError) and isinstance(caught.value, OSError)
    assert caught.value.errno == errno.EACCES and os.strerror(errno.EACCES) in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", [".", "..", "here"])
@pytest.mark.parametrize("json_flag", [False, True])
def test_out_that_is_or_contains_the_current_folder_is_refused_before_solving(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, target: str,
        json_flag: bool) -> None:
    here = tmp_path / "here"
    here.mkdir()
    (here / "mine.txt").write_text("keep me")
    monkeypatch.chdir(here)
    _no_solve(monkeypatch)
    if target == "here":
        target = str(here)  # the same folder by its absolute path
    argv = [NLP, "--out", target, "--force"] + (["--json"] if json_flag else [])
    message = _one_error(*_solve(capsys, *argv), json_flag)
    what = "contains the current folder" if target == ".." else "is the current folder"
    assert message == f"--out {target}: {what}, which cannot be replaced; choose another --out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]
    assert [p.name for p in here.iterdir()] == ["mine.txt"]


# ------------------------------------------------------------ 2. unreadable ONNX files, before solving
def _first_model_file(data: Any, where: str = "") -> tuple[dict[str, Any], str] | None:
    """The first mapping with a ``model_file`` key, and its key path as errors name it."""
    if isinstance(data, dict):
        if "model_file" in data:
            return data, f"{where}.model_file".lstrip(".")
        for key, value in data.items():
            found = _first_model_file(value, f"{where}.{key}")
            if found:
                return found
    if isinstance(data, list):
        for i, value in enumerate(data):
            found = _first_model_file(value, f"{where}[{i}]")
            if found:
                return found
    return None


@pytest.mark.parametrize("example", ["min_gpus_efficientnet", "max_throughput_resnet50_budget",
                                     "variant_selection_infadapter", "pipeline_nlp", "fleet_mixed"])
def test_a_corrupt_onnx_model_file_is_refused_before_solving(tmp_path: Path, example: str) -> None:
    """What ``solve --out`` checks before solving, in every problem kind that takes ``model_file``; reading the
    problem alone (no repository to write) does not parse the model (nor import onnx)."""
    from servopt.triton.artifacts import check_model_files

    source = EXAMPLES / f"{example}.yaml"
    data = yaml.safe_load(source.read_text())
    entry, key = _first_model_file(data)
    bad = tmp_path / "bad.onnx"
    bad.write_text("this is not an ONNX model\n")
    entry["model_file"] = str(bad)
    check_model_files(copy.deepcopy(yaml.safe_load(source.read_text())), source)  # the example itself parses
    problem_from_mapping(copy.deepcopy(data), source)  # read: the file exists, its suffix is known
    with pytest.raises(ValidationError) as caught:
        check_model_files(data, source)
    message = str(caught.value)
    assert message.startswith(f"{source}: key {key!r}: {str(bad)!r}: {bad} is not a readable ONNX model ("), message


def test_a_corrupt_onnx_model_file_is_exit_2_before_solving(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "bad.onnx").write_text("not ONNX\n")
    data = yaml.safe_load(NLP.read_text())
    for stage in data["stages"]:
        for v in stage["variants"]:
            v.pop("model_file", None)
    data["stages"][0]["variants"][0]["model_file"] = "models/bad.onnx"
    problem = tmp_path / "p.yaml"
    problem.write_text(yaml.safe_dump(data))
    _no_solve(monkeypatch)
    message = _one_error(*_solve(capsys, problem, "--json", "--out", tmp_path / "repo"), True)
    assert message.startswith(f"{problem}: key 'stages[0].variants[0].model_file': 'models/bad.onnx': "
                              f"{tmp_path}/models/bad.onnx is not a readable ONNX model (DecodeError")
    assert not (tmp_path / "repo").exists()


def test_each_onnx_file_is_parsed_once_for_reading_and_writing(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx

    from servopt.formulations.registry import load_problem
    from servopt.triton import artifacts, write_repository

    loads: list[str] = []
    real = onnx.load

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(onnx, "load", counting)
    artifacts._parse_onnx.cache_clear()
    video = EXAMPLES / "pipeline_video.yaml"  # 10 variants, 2 model files
    problem = load_problem(video)
    write_repository(problem, servopt.solve(problem), tmp_path / "repo", source=video)
    assert sorted(loads) == sorted(set(loads)) and len(loads) == 2


# ------------------------------------------------------------------------- 3. one message for an existing target
def test_existing_out_has_one_message_in_the_cli_and_the_library(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "repo"
    out.mkdir()
    expected = f"--out {out}: already exists; pass --force to replace it (nothing was written)"
    assert _one_error(*_solve(capsys, NLP, "--out", out), False) == expected
    problem = servopt.load_problem(NLP)
    with pytest.raises(ValidationError) as caught:
        servopt.write_repository(problem, servopt.solve(problem), out, source=NLP)
    assert str(caught.value) == expected
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- 4. options in their own words
@pytest.mark.parametrize(("extra", "expected"), [
    (["--storage-uri", "gs://x"], "--storage-uri only applies with --kserve"),
    (["--time-limit", "-1"], "--time-limit -1: expected a number of seconds > 0"),
    (["--time-limit", "nan"], "--time-limit nan: expected a number of seconds > 0"),
    (["--backend", "cpsat", "--scale", "0"], "--scale 0: expected a finite factor > 0"),
    (["--scale", "inf"], "--scale inf: expected a finite factor > 0"),
])
def test_options_are_refused_in_their_own_words_before_solving(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, extra: list[str],
        expected: str) -> None:
    _no_solve(monkeypatch)
    out = tmp_path / "repo"
    message = _one_error(*_solve(capsys, NLP, "--out", out, *extra, "--json"), True)
    assert message.startswith(expected) and "or None" not in message and "_s=" not in message, message
    assert not out.exists()
