"""`canvas train ...`: reward model, Diffusion-DPO, DDPO and SFT fine-tuning.

Each trainer's command lives in its own module `canvas/cli/train_NAME.py` exposing
`register(group)`; a trainer whose module has not landed yet answers with one clear line.
Keep heavy imports (torch, trl, diffusers) inside the command functions: `canvas --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib

from canvas.cli._common import add_group, not_built

# (command, module, help, issue that builds it)
TRAINERS = (
    ("reward", "canvas.cli.train_reward", "Bradley-Terry reward head on frozen CLIP features", 5),
    ("sft", "canvas.cli.train_sft", "supervised LoRA fine-tuning on image-caption rows", 8),
    ("dpo", "canvas.cli.train_dpo", "Diffusion-DPO LoRA fine-tuning on preference pairs", 5),
    ("ddpo", "canvas.cli.train_ddpo", "DDPO reinforcement learning against a reward", 6),
)


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "train", "train a reward model or fine-tune a diffusion model")
    for name, module, help, issue in TRAINERS:
        try:
            importlib.import_module(module).register(group)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            group.add_parser(name, help=help, description=help).set_defaults(
                func=not_built(issue, f"canvas train {name}")
            )
