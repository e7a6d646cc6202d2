"""Every command of the README's command-line block runs as written (from a fresh folder) and exits 0."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from servopt.cli import main


def readme_commands(root: Path) -> list[str]:
    text = (root / "README.md").read_text()
    section = text[text.index("## The command line"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "README: no ```bash block under '## The command line'"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def test_readme_block_has_only_runnable_commands(root):
    commands = readme_commands(root)
    assert len(commands) >= 9
    for line in commands:  # no line is skipped: each is a servopt command or the model builder
        assert line.startswith("servopt ") or line.startswith("python -m servopt.measure.onnx_models "), line


def test_every_readme_command_exits_0(root, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    for name in ("examples", "data", "profiles"):
        os.symlink(root / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    for line in readme_commands(root):
        argv = shlex.split(line)
        if argv[:3] == ["python", "-m", "servopt.measure.onnx_models"]:
            from servopt.measure.onnx_models import main as build

            code = build(argv[3:])
        else:
            code = main(argv[1:])
        out, err = capsys.readouterr()
        assert code == 0, f"{line}\n{err}"
        assert "Traceback" not in err
    assert (tmp_path / "repo").is_dir() and (tmp_path / "profile.csv").is_file()
