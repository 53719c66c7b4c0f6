"""Model presets: tiny, seeded, offline models loaded through the same calls as real checkpoints.

This package's top imports nothing heavy, so the CLI can name presets without importing torch. The
models load through `canvas.core.presets.clip.create_clip` (open_clip) and `canvas.core.presets.loading.load_pipeline`
(diffusers); `registry` names them.
"""

from canvas.core.presets.registry import PIPELINE_PRESETS, TINY_CLIP_NAME, TINY_PRETRAINED

__all__ = ["PIPELINE_PRESETS", "TINY_CLIP_NAME", "TINY_PRETRAINED"]
