"""`ScoreConfig`: the knobs of `canvas score` (image files scored by one reward)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ScoreConfig:
    reward: str = field(
        default="",
        metadata={
            "help": "reward-model folder (canvas train reward) or brightness, jpeg_compressibility, ...",
            "required": True,
        },
    )
    # plain paths: `open_image_file` checks each and says what is wrong in one line
    images: list[Path] = field(
        default_factory=list, metadata={"help": "image files", "required": True, "action": "append"}
    )
    prompt: str = field(default="", metadata={"help": "the prompt the images were made for (one for all)"})
    json: bool = field(default=False, metadata={"help": "print one JSON object per image"})
