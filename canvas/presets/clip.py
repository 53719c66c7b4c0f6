"""CLIP models through open_clip's own factory, with a tiny offline preset.

The tiny preset is an ordinary open_clip architecture (`model_configs/canvas-tiny-clip.json`,
registered with `open_clip.add_model_config`) whose random weights are built with a fixed seed and
saved as safetensors. It is loaded by exactly the call that loads a real checkpoint:
`open_clip.create_model_and_transforms(name, pretrained=...)`. Real names such as
`ViT-B-32` / `laion2b_s34b_b79k` pass through unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from canvas.errors import CanvasError
from canvas.paths import build_once, preset_dir

TINY_CLIP_NAME = "canvas-tiny-clip"
TINY_PRETRAINED = "tiny"
CLIP_WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_DIR = Path(__file__).parent / "model_configs"
SEED = 0


def register_model_configs() -> None:
    """Make our architectures known to open_clip (idempotent; needed once per process/worker)."""
    import open_clip

    if TINY_CLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)


def build_tiny_clip(out_dir: Path, seed: int = SEED) -> Path:
    """Build the tiny CLIP with a fixed seed and save its weights; returns the safetensors path."""
    import open_clip
    from safetensors.torch import save_file

    register_model_configs()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CLIP_WEIGHTS_FILE
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)  # atomic: a killed build never leaves a half-written weights file
    return path


def resolve_clip(model_name: str, pretrained: str | None, root: Path | None = None) -> tuple[str, str | None]:
    """Map our preset names to (architecture, weights path); build the preset on first use.

    Anything that is not our preset is returned unchanged, so open_clip resolves it itself.
    """
    if model_name == TINY_CLIP_NAME and pretrained in (None, TINY_PRETRAINED):
        path = preset_dir(TINY_PRETRAINED, root) / "clip" / CLIP_WEIGHTS_FILE
        build_once(path, lambda: build_tiny_clip(path.parent))
        return model_name, str(path)
    return model_name, pretrained


def create_clip(
    model_name: str = TINY_CLIP_NAME,
    pretrained: str | None = TINY_PRETRAINED,
    device: str | torch.device = "cpu",
    root: Path | None = None,
) -> tuple[Any, Any, Any]:
    """Return `(model, preprocess, tokenizer)` in eval mode, loaded through open_clip's factory.

    Examples:
        >>> model, preprocess, tokenizer = create_clip()                         # tiny preset
        >>> model, preprocess, tokenizer = create_clip("ViT-B-32", "laion2b_s34b_b79k")
    """
    import open_clip

    register_model_configs()
    name, weights = resolve_clip(model_name, pretrained, root)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=weights, device=device)
    except RuntimeError as exc:  # open_clip raises RuntimeError for unknown names/tags
        raise CanvasError(
            f"cannot load CLIP model {model_name!r} (pretrained={pretrained!r}): {exc}"
        ) from exc
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)
