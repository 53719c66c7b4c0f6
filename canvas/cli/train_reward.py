"""`canvas train reward`: a Bradley-Terry reward head on frozen CLIP features (flags or `--config FILE.yaml`)."""

from __future__ import annotations

import argparse

from canvas.cli._common import add_passthrough

HELP = "Bradley-Terry reward head on frozen CLIP features"


def register(group: argparse._SubParsersAction) -> None:
    add_passthrough(group, ("train", "reward"), HELP, run)


def run(argv: list[str]) -> int:
    from canvas.core.config_parser import parse_config_command
    from canvas.core.errors import CanvasError
    from canvas.rlhf.reward_config import RewardConfig

    config = parse_config_command(RewardConfig, argv, "canvas train reward", HELP)
    from canvas.rlhf.reward_trainer import RewardTrainer  # after parsing: --help and mistakes need no torch

    if not config.preferences:
        raise CanvasError("--preferences is required (a Pick-a-Pic v2 schema Parquet or dataset)")
    summary = RewardTrainer(config).train()
    print(
        f"held-out accuracy {summary['heldout_accuracy']:.3f}, log-loss {summary['heldout_log_loss']:.3f} "
        f"({summary['heldout_pairs']} pairs); model -> {config.output_dir}"
    )
    return 0
