"""`canvas train ddpo`: DDPO reinforcement learning of a diffusion model's LoRA against a reward.

Flags are `DDPOConfig`'s fields (`parse_config_command`), so `--config FILE.yaml` can set any of them and
command-line flags override the file. Multi-GPU: `accelerate launch -m canvas train ddpo ...`.
"""

from __future__ import annotations

import argparse
import json

from canvas.cli._common import add_passthrough
from canvas.core.errors import CanvasError

HELP = "DDPO reinforcement learning against a reward"
DESCRIPTION = (
    "DDPO (Black et al. 2023): sample with DDIM recording log-probs, score with a reward, PPO-clipped updates "
    "of a LoRA on the UNet. Example: canvas train ddpo --prompts prompts.txt --reward jpeg_compressibility "
    "--output runs/ddpo [--pretrained tiny] [--epochs N] [--resume latest] [--config FILE.yaml]. "
    "A tested CPU recipe: --config rlhf/recipes/ddpo_jpeg_tiny_photo_5min.yaml"
)


def register(group: argparse._SubParsersAction) -> None:
    add_passthrough(group, ("train", "ddpo"), HELP, run)


def run(argv: list[str]) -> int:
    from canvas.core.config_parser import parse_config_command
    from canvas.rlhf.ddpo_config import DDPOConfig

    config = parse_config_command(DDPOConfig, argv, "canvas train ddpo", DESCRIPTION)
    if not config.prompts:
        raise CanvasError("--prompts FILE is required (.txt one prompt a line, or .parquet with captions)")

    from canvas.rlhf.ddpo_trainer import DDPOTrainer

    summary = DDPOTrainer(config).train()
    if summary:
        shown = {k: v for k, v in summary.items() if k.startswith(("reward_mean", "eval_")) or k == "lora"}
        print(json.dumps(shown, indent=2))
    return 0
