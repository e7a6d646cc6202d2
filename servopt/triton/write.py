"""Atomic writing of a deployment: everything goes to a temporary folder beside the target, then one rename.

A failure at any point removes the temporary folder and leaves the target as it was; an existing target is only
replaced with ``force=True`` (moved aside, replaced, then deleted; restored if the replacement fails). An OS error
(disk full, permissions) is raised as :class:`WriteError`, naming ``--out``, the target and the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from servopt.exceptions import ServoptError, ValidationError
from servopt.triton.build import TritonDeployment

__all__ = ["config_text", "render_files", "artifact_copies", "write_tree", "check_target", "WriteError"]


class WriteError(ServoptError, OSError):
    """The operating system refused a write (disk full, permissions, a busy folder); nothing was written.

    An :class:`OSError` too, so callers that catch those keep working; the CLI reports it as any
    :class:`~servopt.exceptions.ServoptError` (one line, exit 2)."""


def config_text(config: Any) -> str:
    """``config.pbtxt`` text of a ``ModelConfig`` (protobuf text format, Triton-doc style ``dims: [3, 224]``)."""
    return text_format.MessageToString(config, use_short_repeated_primitives=True)


def render_files(deployment: TritonDeployment, summary: dict[str, Any], manifests: list[dict[str, Any]] | None
                 ) -> tuple[dict[str, str], list[str]]:
    """Relative path -> text of every file, and the (empty) version folders to create."""
    files: dict[str, str] = {}
    folders: list[str] = []
    for repo in deployment.repositories:
        for entry in repo.models:
            base = entry.name if repo.path == "." else f"{repo.path}/{entry.name}"
            files[f"{base}/config.pbtxt"] = config_text(entry.config)
            folders.extend(f"{base}/{v}" for v in entry.versions)
            for v in entry.versions:
                files.update({f"{base}/{v}/{name}": text for name, text in entry.version_files.items()})
    files["servopt.json"] = json.dumps(summary, indent=2, sort_keys=False) + "\n"
    if deployment.routing is not None:
        files["routing.json"] = json.dumps(deployment.routing, indent=2) + "\n"
    if manifests:
        import yaml

        files["kserve.yaml"] = yaml.safe_dump_all(manifests, sort_keys=False)
    files.update(deployment.extra_files)
    return files, folders


def artifact_copies(deployment: TritonDeployment) -> dict[str, Path]:
    """Relative path in the repository -> the model file to copy (or link) there."""
    copies: dict[str, Path] = {}
    for repo in deployment.repositories:
        for entry in repo.models:
            if entry.artifact is None or entry.model_filename is None:
                continue
            base = entry.name if repo.path == "." else f"{repo.path}/{entry.name}"
            for v in entry.versions:
                copies[f"{base}/{v}/{entry.model_filename}"] = entry.artifact.path
    return copies


def check_target(out: Path, force: bool) -> None:
    """Refuse an existing target unless ``force``; refuse a target that is a file, or the current folder or one
    that contains it (it cannot be replaced while in use), either way. ``servopt solve`` calls it before solving.

    >>> check_target(Path("."), force=True)
    Traceback (most recent call last):
    ...
    servopt.exceptions.ValidationError: --out .: is the current folder, which cannot be replaced; choose another --out
    """
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise ValidationError(f"--out {out}: exists and is not a directory; choose another --out")
        here = Path.cwd()
        if out.resolve() == here or out.resolve() in here.parents:
            what = "is the current folder" if out.resolve() == here else "contains the current folder"
            raise ValidationError(f"--out {out}: {what}, which cannot be replaced; choose another --out")
        if not force:
            raise ValidationError(f"--out {out}: already exists; pass --force to replace it (nothing was written)")


def _write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_tree(out: Path, files: dict[str, str], folders: list[str], *, force: bool,
               copies: dict[str, Path] | None = None, link: bool = False) -> Path:
    """Write ``files`` and ``folders`` under ``out`` atomically; ``copies`` (relative path -> model file) are
    copied, or with ``link`` symlinked to the file's absolute path."""
    out = Path(out)
    check_target(out, force)
    created_parents = []
    parent = out.parent
    while not parent.exists():
        created_parents.append(parent)
        parent = parent.parent
    tmp: Path | None = None
    old: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.servopt-tmp-", dir=out.parent))
        for folder in folders:
            (tmp / folder).mkdir(parents=True, exist_ok=True)
        for rel, text in files.items():
            _write_file(tmp / rel, text)
        for rel, src in (copies or {}).items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            if link:
                os.symlink(Path(src).resolve(), tmp / rel)
            else:
                shutil.copyfile(src, tmp / rel)
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.servopt-old-", dir=out.parent))
            os.replace(out, old / "previous")
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old / "previous", out)
                raise
            tmp = None
            shutil.rmtree(old, ignore_errors=True)
            old = None
        else:
            os.replace(tmp, out)
            tmp = None
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not (old / "previous").exists():
            shutil.rmtree(old, ignore_errors=True)
        for folder in created_parents:
            try:
                folder.rmdir()
            except OSError:
                pass
        if isinstance(exc, OSError) and not isinstance(exc, ServoptError):
            kept = old / "previous" if old is not None and (old / "previous").exists() else None
            error = WriteError(f"--out {out}: cannot write the repository: {exc.strerror or exc} (nothing was "
                               "written" + (f"; the previous folder is now {kept}" if kept else "") + ")")
            error.errno = exc.errno
            raise error from exc
        raise
    return out
