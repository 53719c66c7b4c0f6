"""Finding and stopping the Label Studio processes of a data dir (by /proc, guarded against pid reuse)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by us) counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def is_label_studio(pid: int) -> bool:
    """Guard against a recycled PID: only signal a process whose command line is Label Studio's."""
    try:
        return b"label-studio" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def data_dir_processes(data_dir: Path) -> dict[int, int | None]:
    """pid -> port of every Label Studio server whose environment names this data dir (ours or not).

    Reads /proc: a server started by another `canvas` (or whose pid file was lost) is still found.
    """
    marker = f"LABEL_STUDIO_BASE_DATA_DIR={data_dir}".encode() + b"\0"
    found: dict[int, int | None] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if not any(a.endswith(b"label-studio") for a in args) or b"start" not in args:
                continue
            if marker not in (entry / "environ").read_bytes():
                continue
        except OSError:  # gone meanwhile, or another user's process
            continue
        pid = int(entry.name)
        if not pid_alive(pid):
            continue
        port = args[args.index(b"--port") + 1] if b"--port" in args[:-1] else b""
        found[pid] = int(port) if port.isdigit() else None
    return found


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        reap(pid)


def reap(pid: int) -> None:
    """Collect the exit status when the server is our own child (tests), so it does not linger."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
