"""Model presets: tiny, seeded, offline models loaded through the same calls as real checkpoints."""

from __future__ import annotations

from pathlib import Path

from canvas.paths import preset_dir
from canvas.presets.clip import TINY_CLIP_NAME, build_tiny_clip, create_clip, resolve_clip
from canvas.presets.diffusion import build_tiny_sd, load_pipeline, resolve_pretrained

PRESETS = ("tiny",)

__all__ = [
    "PRESETS",
    "TINY_CLIP_NAME",
    "create_clip",
    "init_preset",
    "load_pipeline",
    "resolve_clip",
    "resolve_pretrained",
]


def init_preset(preset: str = "tiny", root: Path | None = None) -> dict[str, Path]:
    """Build (or rebuild) every model of a preset; returns the paths written."""
    if preset not in PRESETS:
        from canvas.errors import CanvasError

        raise CanvasError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    base = preset_dir(preset, root)
    return {
        "clip": build_tiny_clip(base / "clip"),
        "sd15": build_tiny_sd(base / "sd15"),
    }
