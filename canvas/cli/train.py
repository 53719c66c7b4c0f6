"""`canvas train ...`: reward model, Diffusion-DPO, DDPO fine-tuning."""

from __future__ import annotations

import argparse

from canvas.cli._common import add_group, not_built


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "train", "train a reward model or fine-tune a diffusion model")
    for name, help, issue in [
        ("reward", "Bradley-Terry reward head on frozen CLIP features", 5),
        ("dpo", "Diffusion-DPO LoRA fine-tuning on preference pairs", 5),
        ("ddpo", "DDPO reinforcement learning against a reward", 6),
    ]:
        group.add_parser(name, help=help, description=help).set_defaults(
            func=not_built(issue, f"canvas train {name}")
        )
