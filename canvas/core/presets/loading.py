"""Resolve a pipeline preset name to its folder (built on first use) and load any pipeline through diffusers.

`DiffusionPipeline.from_pretrained` is the one load call: the tiny presets are ordinary pipeline folders, so
SD 1.5, SDXL and the presets take the same path. Names come from `canvas.core.presets.registry`; each is mapped to
its builder here.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from canvas.core.atomic import atomic_path
from canvas.core.errors import CanvasError
from canvas.core.paths import build_once, preset_dir
from canvas.core.presets.build_key import is_current, stamp
from canvas.core.presets.clip import CLIP_WEIGHTS_FILE, build_tiny_clip
from canvas.core.presets.diffusion import build_tiny_sd
from canvas.core.presets.photo import build_tiny_photo_sd
from canvas.core.presets.registry import PIPELINE_PRESETS, PRESET_ROOT, TINY_PRETRAINED
from canvas.core.presets.sdxl import build_tiny_sdxl

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "tiny": build_tiny_sd,
    "tiny-sdxl": build_tiny_sdxl,
    "tiny-photo": build_tiny_photo_sd,
}
assert BUILDERS.keys() == PIPELINE_PRESETS.keys(), "registry and builders name the same presets"


def resolve_pretrained(pretrained: str, root: Path | None = None) -> str:
    """A preset name -> its folder (built on first use); anything else (folder or hub id) unchanged."""
    preset = PIPELINE_PRESETS.get(pretrained)
    if preset is None:
        return pretrained
    path = preset_dir(PRESET_ROOT, root) / preset.folder
    build_once(path / "model_index.json", lambda: _build(pretrained, path))
    return str(path)


def _build(name: str, path: Path) -> None:
    """Build a preset here, or in a fresh interpreter when this process is part of a torch.distributed group:
    transformers 5 writes model weights only on rank 0 of an initialized group, and the process that wins
    the build lock under torchrun may be rank 1 (it then left a text encoder without weights)."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        import subprocess
        import sys

        subprocess.run([sys.executable, "-m", __name__, name, str(path)], check=True)
    else:
        BUILDERS[name](path)
    stamp(path)


_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def check_pipeline_source(pretrained: str) -> None:
    """Raise CanvasError (one line) unless `pretrained` is a preset, a pipeline folder (`model_index.json`)
    or a hub id already in this machine's Hugging Face cache: run before a pipeline starts, so a typo is one
    line, not a worker's traceback. Never downloads (the jobs run offline)."""
    if pretrained in PIPELINE_PRESETS:
        return
    path = Path(pretrained).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise CanvasError(
                f"--pretrained {pretrained}: a folder without model_index.json (not a diffusers pipeline)"
            )
        return
    if not _HUB_ID.fullmatch(pretrained) or pretrained.startswith((".", "~")):
        presets = ", ".join(PIPELINE_PRESETS)
        raise CanvasError(
            f"--pretrained {pretrained}: no such folder, and not a preset ({presets}) or a hub id"
        )
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(pretrained, "model_index.json"), str):
        raise CanvasError(
            f"--pretrained {pretrained}: not in this machine's Hugging Face cache, and jobs never download: "
            "fetch it where there is internet and copy the cache here, or pass its folder"
        )


def load_pipeline(pretrained: str = TINY_PRETRAINED, root: Path | None = None, **kwargs: Any) -> Any:
    """Load any diffusers text-to-image pipeline (a preset, SD 1.5, SDXL) via `from_pretrained`.

    `DiffusionPipeline` dispatches on the folder's `model_index.json`, so SD 1.5 and SDXL take the
    same path. Extra keyword arguments (e.g. `torch_dtype`) go to diffusers unchanged.
    """
    from diffusers import DiffusionPipeline

    path = resolve_pretrained(pretrained, root)
    try:
        pipe = DiffusionPipeline.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise CanvasError(f"cannot load diffusion pipeline {pretrained!r}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def init_preset(
    preset: str = TINY_PRETRAINED, root: Path | None = None, rebuild: bool = True
) -> dict[str, Path]:
    """Build the tiny CLIP and one pipeline preset into `root` (default `$CANVAS_HOME`); the paths.

    `rebuild=False` builds only what is missing or was built under another build key (older builder code
    or libraries: `canvas.core.presets.build_key`). Either way under the build lock that build-on-first-use
    takes: a rebuild replaces the folder, and another process building or reading it meanwhile (a test
    worker, a second job) would otherwise lose files under it.
    """
    if preset not in PIPELINE_PRESETS:
        raise CanvasError(f"unknown preset {preset!r}; known: {', '.join(PIPELINE_PRESETS)}")
    base = preset_dir(PRESET_ROOT, root)
    clip = base / "clip" / CLIP_WEIGHTS_FILE
    build_once(clip, lambda: build_tiny_clip(clip.parent), rebuild)
    folder = base / PIPELINE_PRESETS[preset].folder
    stale = rebuild or not is_current(folder)
    build_once(folder / "model_index.json", lambda: _build(preset, folder), stale)
    return {"clip": clip, PIPELINE_PRESETS[preset].folder: folder}


def copy_current_presets(source: Path, root: Path | None = None) -> list[str]:
    """Copy every pipeline preset that `source` (another CANVAS_HOME) holds under the current build key
    into `root` (default `$CANVAS_HOME`) where `root` lacks it; the names `root` now holds from it. Under
    the build lock, as a build: processes starting together copy once and never see a half-copied folder."""
    copied = []
    for name, preset in PIPELINE_PRESETS.items():
        src = preset_dir(PRESET_ROOT, source) / preset.folder
        dest = preset_dir(PRESET_ROOT, root) / preset.folder
        if src.resolve() == dest.resolve() or not (src / "model_index.json").exists() or not is_current(src):
            continue
        build_once(dest / "model_index.json", lambda src=src, dest=dest: _copy_folder(src, dest))
        copied.append(name)
    return copied


def _copy_folder(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copytree(src, tmp)


if __name__ == "__main__":  # `python -m canvas.core.presets.loading NAME FOLDER`: what `_build` runs
    import sys

    BUILDERS[sys.argv[1]](Path(sys.argv[2]))
