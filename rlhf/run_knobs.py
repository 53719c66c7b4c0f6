"""The run-folder knobs every trainer config declares, each documented once (trl/diffusers names).

A config writes `resume_from_checkpoint: str | None = resume_from_checkpoint_field()`; the help text and
the default live here, so `canvas train dpo|sft|ddpo|reward --help` say the same thing in the same words.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def resume_from_checkpoint_field() -> Any:
    return field(
        default=None,
        metadata={
            "aliases": ["--resume"],
            "help": "'latest' (newest checkpoint in output_dir; starts fresh if there is none) or a checkpoint "
            "folder: continue that run exactly",
        },
    )


def overwrite_output_dir_field() -> Any:
    return field(
        default=False,
        metadata={
            "help": "A fresh run into a folder holding a previous run's files (checkpoints/, metrics.jsonl, "
            "the model...) is refused; with this flag those files are removed first (other files are "
            "kept). Ignored when resuming."
        },
    )


def tensorboard_field() -> Any:
    return field(default=True, metadata={"help": "mirror metrics to TensorBoard (OUTPUT/tensorboard)"})
