"""The run-folder knobs every trainer config declares, each documented once (trl/diffusers names).

A config writes `resume_from_checkpoint: str | None = resume_from_checkpoint_field()`; the help text and
the default live here, so `canvas train dpo|sft|ddpo|reward --help` say the same thing in the same words.
"""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any

LR_SCHEDULERS = ("constant", "cosine", "linear")


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


def lr_factor(step: int, warmup_steps: int, total_steps: int, scheduler: str = "constant") -> float:
    """Multiplier of the learning rate at optimizer step `step` (0-based) of a `total_steps` run: linear
    warm-up over `warmup_steps`, then `scheduler` (constant, or cosine / linear decay to 0 at the end). A
    function of the step alone, so a resumed run needs no scheduler state."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if scheduler == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if scheduler == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
