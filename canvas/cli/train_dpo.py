"""`canvas train dpo`: Diffusion-DPO LoRA fine-tuning (flags or `--config FILE.yaml`; `accelerate launch` for GPUs)."""

from __future__ import annotations

import argparse

from canvas.cli._common import add_passthrough

HELP = "Diffusion-DPO LoRA fine-tuning on preference pairs"


def register(group: argparse._SubParsersAction) -> None:
    add_passthrough(group, ("train", "dpo"), HELP, run)


def run(argv: list[str]) -> int:
    from canvas.core.config_parser import parse_config_command
    from canvas.core.errors import CanvasError
    from canvas.rlhf.dpo_config import DiffusionDPOConfig

    config = parse_config_command(DiffusionDPOConfig, argv, "canvas train dpo", HELP)
    from canvas.rlhf.dpo_trainer import (
        DiffusionDPOTrainer,
    )  # after parsing: --help and mistakes need no torch

    if not config.preferences:
        raise CanvasError("--preferences is required (a Pick-a-Pic v2 schema Parquet or dataset)")
    summary = DiffusionDPOTrainer(config).train()
    if summary:  # only the main process reports
        acc = summary["heldout_implicit_acc"]
        acc_text = "n/a" if acc is None else f"{acc:.3f}"
        print(
            f"{summary['steps']} steps, held-out implicit accuracy {acc_text}; "
            f"LoRA -> {config.output_dir} (pipe.load_lora_weights)"
        )
    return 0
