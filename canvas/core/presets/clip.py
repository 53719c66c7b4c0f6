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

from canvas.core.atomic import atomic_path
from canvas.core.errors import CanvasError
from canvas.core.paths import build_once, preset_dir
from canvas.core.presets.registry import PRESET_ROOT, SEED, TINY_CLIP_NAME, TINY_PRETRAINED

CLIP_WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_DIR = Path(__file__).parent / "model_configs"


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
    with atomic_path(path) as tmp:  # a killed build never leaves a half-written weights file
        save_file(state, str(tmp))
    return path


def resolve_clip(model_name: str, pretrained: str | None, root: Path | None = None) -> tuple[str, str | None]:
    """Map our preset names to (architecture, weights path); build the preset on first use.

    Anything that is not our preset is returned unchanged, so open_clip resolves it itself.
    """
    if model_name == TINY_CLIP_NAME and pretrained in (None, TINY_PRETRAINED):
        path = preset_dir(PRESET_ROOT, root) / "clip" / CLIP_WEIGHTS_FILE
        build_once(path, lambda: build_tiny_clip(path.parent))
        return model_name, str(path)
    return model_name, pretrained


def _cached_weights(cfg: dict[str, Any]) -> tuple[str | None, str]:
    """(local path or None, where to get the weights) for an open_clip pretrained cfg; no network.

    Looks where `open_clip.pretrained.download_pretrained` would: the Hugging Face cache (safetensors
    first), else open_clip's URL cache.
    """
    import os

    from huggingface_hub import try_to_load_from_cache
    from open_clip import pretrained as oc_pretrained

    if "file" in cfg:
        return (cfg["file"] if os.path.isfile(cfg["file"]) else None), cfg["file"]
    if cfg.get("hf_hub") and oc_pretrained.has_hf_hub():
        repo, filename = os.path.split(cfg["hf_hub"])
        filename = filename or oc_pretrained.HF_WEIGHTS_NAME
        names = [filename]  # open_clip tries a .safetensors sibling first (its _get_safe_alternatives)
        if filename == oc_pretrained.HF_WEIGHTS_NAME:
            names.insert(0, oc_pretrained.HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):  # None: not cached; a sentinel object: cached as missing
                return found, f"`hf download {repo} {name}`"
        return None, f"`hf download {repo} {names[0]}`"
    url = cfg.get("url", "")
    path = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
    return (path if url and os.path.isfile(path) else None), f"{url} into ~/.cache/clip"


def check_clip_weights(model_name: str, pretrained: str | None) -> None:
    """Raise CanvasError (one line) when `pretrained` names weights this machine does not have.

    Runs before a pipeline starts, so a mistake is one line instead of a traceback per worker. Never
    downloads (curation runs offline): a path must exist; an open_clip tag must be one of the model's
    and its weights already cached. None/"none" (random weights) and the tiny preset always pass.
    """
    import open_clip

    if pretrained in (None, "", "none") or (model_name == TINY_CLIP_NAME and pretrained == TINY_PRETRAINED):
        return
    register_model_configs()
    what = f"cannot load CLIP model {model_name!r} (pretrained={pretrained!r})"
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:  # open_clip's order: a known tag first, then a file path
        if Path(pretrained).is_file():
            return
        if "/" in pretrained or Path(pretrained).suffix in (".safetensors", ".bin", ".pt", ".pth"):
            raise CanvasError(f"{what}: no such weights file")
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        raise CanvasError(
            f"{what}: neither a weights file nor a pretrained tag of {model_name} (its tags: {tags})"
        )
    found, source = _cached_weights(cfg)
    if found is None:
        raise CanvasError(
            f"{what}: its weights are not on this machine and curation never downloads: fetch them where "
            f"there is internet ({source}) and copy that cache to this machine, or pass a local weights file"
        )


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
