"""Where canvas keeps generated model presets and other caches."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

DEFAULT_HOME = "~/.cache/canvas-rlhf"


def canvas_home() -> Path:
    """`$CANVAS_HOME`, else `~/.cache/canvas-rlhf`. Created on first use by whoever writes there."""
    return Path(os.environ.get("CANVAS_HOME", DEFAULT_HOME)).expanduser()


def preset_dir(preset: str = "tiny", root: Path | None = None) -> Path:
    """Folder of one model preset, e.g. `$CANVAS_HOME/presets/tiny`."""
    return (root or canvas_home()) / "presets" / preset


def build_once(marker: Path, build: Callable[[], object], rebuild: bool = False) -> None:
    """Run `build()` unless `marker` (a file the build writes last) exists, under an exclusive file lock;
    `rebuild=True` builds again even so (still under the lock).

    Processes that start together (a multi-process training launch, two jobs on one machine) would
    otherwise build the same preset into the same temp folder and delete each other's files: one builds,
    the others wait for the lock and then find the marker.
    """
    if marker.exists() and not rebuild:
        return
    marker.parent.parent.mkdir(parents=True, exist_ok=True)
    with open(marker.parent.with_name(marker.parent.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if rebuild or not marker.exists():
            build()
