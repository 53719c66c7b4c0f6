"""`canvas train draft`: DRaFT / AlignProp fine-tuning of a diffusion model's LoRA on a differentiable reward.

Flags are `DraftConfig`'s fields (`parse_config_command`), so `--config FILE.yaml` can set any of them and
command-line flags override the file. Multi-GPU: `accelerate launch -m canvas train draft ...`.
"""

from __future__ import annotations

import argparse
import json

from canvas.cli._common import add_passthrough
from canvas.core.errors import CanvasError

HELP = "DRaFT / AlignProp: backpropagate a differentiable reward into a LoRA"
DESCRIPTION = (
    "DRaFT-K (Clark et al. 2023) / AlignProp (Prabhudesai et al. 2023): sample with DDIM, keep the graph of "
    "the last K denoising steps, decode, score with a differentiable reward (brightness or a reward-model "
    "folder from `canvas train reward`) and backpropagate -reward into a LoRA on the UNet. JPEG size is not "
    "differentiable: use `canvas train ddpo` for it. Example: canvas train draft --prompts prompts.txt "
    "--reward runs/reward --output runs/draft [--draft_k 1] [--max_steps N] [--resume latest] [--config FILE.yaml]"
)


def register(group: argparse._SubParsersAction) -> None:
    add_passthrough(group, ("train", "draft"), HELP, run)


def run(argv: list[str]) -> int:
    from canvas.core.config_parser import parse_config_command
    from canvas.rlhf.draft_config import DraftConfig

    config = parse_config_command(DraftConfig, argv, "canvas train draft", DESCRIPTION)
    from canvas.rlhf.draft_rewards import load_differentiable_reward

    reward = load_differentiable_reward(config.reward)  # a non-differentiable reward fails before --prompts
    if not config.prompts:
        raise CanvasError("--prompts FILE is required (.txt one prompt a line, or .parquet with captions)")

    from canvas.rlhf.draft_trainer import DraftTrainer

    summary = DraftTrainer(config, reward=reward).train()
    if summary:
        keys = (
            "reward_mean_first_step",
            "reward_mean_last_step",
            "reward_queries",
            "training_seconds",
            "lora",
        )
        shown = {k: v for k, v in summary.items() if k in keys or k.startswith("eval_")}
        print(json.dumps(shown, indent=2))
    return 0
