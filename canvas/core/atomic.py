"""Local writes that appear whole or not at all: write under a temporary name beside the target, then
`os.replace` it into place in one rename (atomic on POSIX within one file system).

A killed process leaves at most a `.NAME.tmp-PID` file or folder beside the target, never a target that
looks complete but is not. Every writer of a file another stage or a resume reads goes through here
(run summaries, checkpoints, presets, reports, labeling exports). Whole output folders of Beam pipelines
use `canvas.core.outputs`, which adds locking and remote file systems on top of the same idea.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "replace_path", "write_json_atomic", "write_text_atomic"]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace_path(tmp: str | Path, path: str | Path) -> Path:
    """Move the finished `tmp` (file or folder) to `path`, replacing what is there (a folder is removed
    first: `os.replace` cannot replace a non-empty folder)."""
    tmp, path = Path(tmp), Path(path)
    if tmp.is_dir() and path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write a file or folder at; on success it replaces `path`, on an
    error it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)  # a killed run with the same pid
    try:
        yield tmp
        replace_path(tmp, path)
    finally:
        _remove(tmp)  # gone already after a replace


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """`Path(path).write_text(text)`, but readers never see a half-written file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_json_atomic(path: str | Path, value: Any, **dumps: Any) -> Path:
    """`value` as JSON (`json.dumps(value, **dumps)`), written atomically."""
    return write_text_atomic(path, json.dumps(value, **dumps))
