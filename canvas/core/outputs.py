"""Output folders that are replaced whole, safely: only a previous output of the same command is replaced.

A command that writes a whole folder (`canvas curate`, `canvas generate`) does

    with prepare_output(output, "curate", inputs, overwrite) as tmp:
        ...write everything into tmp...
        commit_output(tmp, output, "curate")

`prepare_output` checks, before any work, that the folder may be written: it is missing, empty, or holds
the marker file (`.canvas-output.json`, written by `commit_output`) of the same command; anything else is
refused with one line unless `overwrite`. Even with `overwrite`, an output that holds one of the inputs,
the current folder or one of its parents is refused, so no flag makes a run delete what it reads. A local
output is locked (an exclusive `fcntl` lock on `.NAME.lock` beside it) for the whole run, so a second run
into the same folder fails at once instead of racing; stale temp folders of killed runs (`.NAME.partial-*`)
are removed only while holding that lock. `commit_output` renames the temp folder into place in one step,
so a killed run leaves nothing that looks complete.

Remote outputs (`gs://`, `s3://`, `hdfs://`, through Beam's FileSystems) get the same marker check, but
cannot be locked (object stores have no file locks): two runs into one remote output are not detected,
and their commit copies file by file, the marker last.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from canvas.core.errors import CanvasError

__all__ = ["MARKER", "commit_output", "prepare_output"]

MARKER = ".canvas-output.json"


def _is_remote(path: str) -> bool:
    return "://" in path


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_local(out: Path, command: str, inputs: Sequence[str], overwrite: bool) -> None:
    """Refuse an output that would destroy inputs or foreign data; `out` is absolute, not resolved."""
    real = out.resolve()
    cwd = Path.cwd().resolve()
    try:
        home = Path.home().resolve()
    except RuntimeError:  # no home folder known
        home = None
    if _inside(cwd, real) or real == Path(real.anchor) or real == home:
        raise CanvasError(
            f"--output {out} is the current folder, one of its parents, the home or the root folder, "
            "which the run would replace; name a new folder, e.g. --output ./out"
        )
    for name in inputs:
        if _is_remote(name):
            continue
        path = Path(name).expanduser().absolute()  # as the readers open it (and the output is named)
        if _inside(path, out) or _inside(path.resolve(), real):
            raise CanvasError(
                f"input {name} lies inside --output {out}, which the run replaces; "
                "choose an output folder outside the inputs (--overwrite does not change this)"
            )
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        if out.is_symlink() and overwrite:
            return
        what = "a symbolic link" if out.is_symlink() else "a file"
        raise CanvasError(f"--output {out} is {what}, not a folder; choose another --output")
    if not out.exists() or overwrite:
        return
    try:
        entries = [p.name for p in out.iterdir()]
    except OSError as exc:
        raise CanvasError(f"--output {out} cannot be read ({exc.strerror}); choose another --output") from exc
    if not entries:
        return
    found = _read_marker((out / MARKER).read_text) if MARKER in entries else None
    _refuse_foreign(str(out), command, found)


def _read_marker(read: object) -> str | None:
    """The command named by a marker file, or None when it is unreadable or not ours."""
    try:
        data = json.loads(read())  # type: ignore[operator]
    except (OSError, ValueError):
        return None
    return data.get("command") if isinstance(data, dict) and isinstance(data.get("command"), str) else None


def _refuse_foreign(out: str, command: str, found: str | None) -> None:
    if found == command:
        return
    held = (
        f"the output of canvas {found}" if found else f"files not written by canvas {command} (no {MARKER})"
    )
    raise CanvasError(
        f"--output {out} already holds {held}; choose another --output, or pass --overwrite to replace "
        "the folder and everything in it"
    )


def _check_remote(out: str, command: str, inputs: Sequence[str], overwrite: bool) -> None:
    from apache_beam.io.filesystems import FileSystems

    for name in inputs:
        if name == out or name.startswith(out + "/"):
            raise CanvasError(
                f"input {name} lies inside --output {out}, which the run replaces; "
                "choose an output folder outside the inputs (--overwrite does not change this)"
            )
    if overwrite:
        return
    marker = f"{out}/{MARKER}"
    if FileSystems.exists(marker):

        def read() -> str:
            with FileSystems.open(marker) as handle:
                return handle.read().decode()

        _refuse_foreign(out, command, _read_marker(read))
        return
    found = []
    with contextlib.suppress(Exception):  # BeamIOError when nothing matches: an empty or missing output
        found = FileSystems.match([f"{out}/**"])[0].metadata_list
    if found:
        _refuse_foreign(out, command, None)


def _lock(out: Path) -> int:
    """Take the run's exclusive lock on `out` (released when the returned descriptor closes)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out.parent / f".{out.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CanvasError(
            f"--output {out} cannot be written ({exc.strerror}: {exc.filename}); choose another --output"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CanvasError(
            f"another canvas run is writing --output {out} (it holds {out.parent / f'.{out.name}.lock'}); "
            "wait for it to finish or choose another --output"
        ) from None
    return fd


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def prepare_output(
    output: str | Path, command: str, inputs: Sequence[str | Path] = (), overwrite: bool = False
) -> Iterator[str]:
    """Check and lock `output`, then yield a fresh temp folder beside it to write the whole output into.

    Args:
        output: the output folder (local path, or a `scheme://` path for Beam's FileSystems).
        command: the command's name (`curate`, `generate`); the marker records it.
        inputs: the files the run reads; none may lie inside `output`, even with `overwrite`.
        overwrite: replace an output that is not a previous output of `command`.

    Raises CanvasError (one line) before any work when the output may not or cannot be written, or when
    another run holds it. The temp folder is removed if the body fails or does not call `commit_output`.
    """
    names = [str(i) for i in inputs]
    out_name = str(output).rstrip("/")
    if _is_remote(out_name):
        _check_remote(out_name, command, names, overwrite)
        tmp = f"{out_name}.partial-{uuid.uuid4().hex[:12]}"
        try:
            yield tmp
        finally:  # what a failed run wrote; nothing is left after a commit
            from apache_beam.io.filesystems import FileSystems

            with contextlib.suppress(Exception):
                FileSystems.delete([m.path for m in FileSystems.match([f"{tmp}/**"])[0].metadata_list])
        return
    out = Path(out_name).expanduser().absolute()
    _check_local(out, command, names, overwrite)
    fd = _lock(out)
    try:
        name = glob.escape(out.name)  # an output named `run[1]` must not match `.run1.partial-*`
        for stale in (*out.parent.glob(f".{name}.partial-*"), *out.parent.glob(f".{name}.old-*")):
            _remove(stale)  # left by killed runs; safe to remove: we hold the lock
        tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
        try:
            tmp.mkdir()
        except OSError as exc:
            raise CanvasError(
                f"--output {out} cannot be written ({exc.strerror}: {tmp.parent}); choose another --output"
            ) from exc
        try:
            yield str(tmp)
        finally:
            _remove(tmp)  # gone already after a commit
    finally:
        os.close(fd)


def _marker_text(command: str) -> str:
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return json.dumps({"command": command, "written_at": stamp}) + "\n"


def commit_output(tmp: str, output: str | Path, command: str) -> None:
    """Write the marker into `tmp` and make `tmp` the output folder (local: one rename; remote: a copy,
    the marker last, after the old output's files are deleted, its marker first)."""
    out_name = str(output).rstrip("/")
    if not _is_remote(out_name):
        Path(tmp, MARKER).write_text(_marker_text(command))
        out = Path(out_name).expanduser().absolute()
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        if out.is_symlink() or out.exists():
            out.rename(old)
        os.replace(tmp, out)
        _remove(old)
        return
    from apache_beam.io.filesystems import FileSystems

    marker = f"{out_name}/{MARKER}"
    if FileSystems.exists(marker):  # the old output stops looking complete before any of it goes
        FileSystems.delete([marker])
    with contextlib.suppress(Exception):  # BeamIOError when there is no old output
        old = [m.path for m in FileSystems.match([f"{out_name}/**"])[0].metadata_list]
        if old:
            FileSystems.delete(old)
    files = sorted(m.path for m in FileSystems.match([f"{tmp}/**"])[0].metadata_list)
    files.sort(key=lambda p: p.endswith("report.json"))  # the report, then the marker: last
    for src in files:
        FileSystems.rename([src], [out_name + src[len(tmp) :]])
    with FileSystems.create(marker) as handle:
        handle.write(_marker_text(command).encode())
    with contextlib.suppress(Exception):  # an object store has no folder left to delete
        FileSystems.delete([tmp])
