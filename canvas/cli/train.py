"""`canvas train ...`: reward model, Diffusion-DPO, DDPO, DRaFT and SFT fine-tuning.

Each trainer's command lives in its own module `canvas/cli/train_NAME.py` exposing `register(group)`;
a new trainer is a new module plus one line here. Heavy imports (torch, diffusers) stay inside the
command functions: `canvas --help` stays fast.
"""

from __future__ import annotations

import argparse

from canvas.cli import train_ddpo, train_dpo, train_draft, train_reward, train_sft
from canvas.cli._common import add_group

TRAINERS = (
    train_reward,
    train_sft,
    train_dpo,
    train_ddpo,
    train_draft,
)  # the order `canvas train --help` lists them


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "train", "train a reward model or fine-tune a diffusion model")
    for trainer in TRAINERS:
        trainer.register(group)
