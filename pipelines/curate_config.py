"""`CurateConfig`: the knobs of `canvas curate` itself (inputs, output, CLIP model).

The stages' knobs are `canvas.curation.config.CurationConfig` (`curation/default_config.yaml`). Both live
in one `--config FILE.yaml`: this dataclass's keys at the top level beside the stage sections (`decode:`,
`basic_filter:`, ...); flags override the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from canvas.core.presets.registry import TINY_CLIP_NAME, TINY_PRETRAINED


@dataclass
class CurateConfig:
    input: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Parquet (key, caption, image|jpg) or WebDataset .tar: files, folders or globs",
            "required": True,
        },
    )
    output: str = field(
        default="",
        metadata={
            "help": "output folder, written atomically; an existing one must be empty or a previous curate output",
            "required": True,
        },
    )
    clip_model: str = field(default=TINY_CLIP_NAME, metadata={"help": "open_clip model name"})
    clip_pretrained: str = field(
        default=TINY_PRETRAINED,
        metadata={"help": "open_clip pretrained tag or weights path (none = random weights, for benchmarks)"},
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "replace an --output folder that is not a previous curate output (never one holding an input)"
        },
    )
