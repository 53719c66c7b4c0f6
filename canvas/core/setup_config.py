"""The knobs of the setup commands, `canvas models init` and `canvas data sample`: one dataclass each,
flags or keys of `--config FILE.yaml` (canvas.core.config_parser)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from canvas.core.presets.registry import PIPELINE_PRESETS


@dataclass
class ModelsInitConfig:
    preset: str = field(
        default="tiny",
        metadata={
            "help": "pipeline preset to build beside the tiny CLIP; "
            + "; ".join(f"{p.name}: {p.description}" for p in PIPELINE_PRESETS.values()),
            "choices": list(PIPELINE_PRESETS),
        },
    )
    dir: Path | None = field(default=None, metadata={"help": "root folder instead of $CANVAS_HOME"})
    rebuild: bool = field(
        default=True,
        metadata={
            "help": "build again even when a build under the current build key is there (false: "
            "build only what is missing or stale; what `make setup` runs)"
        },
    )


@dataclass
class SampleDataConfig:
    output: Path | None = field(default=None, metadata={"help": "output .parquet file", "required": True})
