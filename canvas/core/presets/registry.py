"""The names of the offline model presets, as plain data (no torch): the CLI's help and choices read it.

One table, like open_clip's registry of model configs: a pipeline preset is a name, the folder it is built
into under `$CANVAS_HOME/presets/tiny/`, and one line saying what it is. `canvas.core.presets.loading` maps each
name to its builder; a new preset is a row here plus a builder there.
"""

from __future__ import annotations

from dataclasses import dataclass

TINY_CLIP_NAME = "canvas-tiny-clip"  # the open_clip architecture (model_configs/canvas-tiny-clip.json)
TINY_PRETRAINED = "tiny"  # its weights tag, and the name of the tiny SD pipeline preset
PRESET_ROOT = "tiny"  # every preset folder lives under $CANVAS_HOME/presets/tiny/
SEED = 0  # every preset is built with this seed


@dataclass(frozen=True)
class PipelinePreset:
    name: str
    folder: str
    description: str


PIPELINE_PRESETS: dict[str, PipelinePreset] = {
    p.name: p
    for p in (
        PipelinePreset("tiny", "sd15", "SD-1.5-style pipeline, 32x32 images, random seeded weights"),
        PipelinePreset("tiny-sdxl", "sdxl", "SDXL-style pipeline (two text encoders), 32x32 images"),
        PipelinePreset("tiny-photo", "sd15-photo", "the tiny pipeline briefly pretrained on photo crops"),
    )
}
