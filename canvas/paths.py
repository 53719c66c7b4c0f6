"""Where canvas keeps generated model presets and other caches."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "~/.cache/canvas-rlhf"


def canvas_home() -> Path:
    """`$CANVAS_HOME`, else `~/.cache/canvas-rlhf`. Created on first use by whoever writes there."""
    return Path(os.environ.get("CANVAS_HOME", DEFAULT_HOME)).expanduser()


def preset_dir(preset: str = "tiny", root: Path | None = None) -> Path:
    """Folder of one model preset, e.g. `$CANVAS_HOME/presets/tiny`."""
    return (root or canvas_home()) / "presets" / preset
