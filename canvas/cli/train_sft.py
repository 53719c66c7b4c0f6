"""`canvas train sft`: supervised LoRA fine-tuning on image-caption rows (flags or `--config FILE.yaml`).

Multi-GPU / mixed precision: `accelerate launch -m canvas train sft ...` with `--mixed_precision bf16`.
"""

from __future__ import annotations

import argparse

from canvas.cli._common import add_passthrough

HELP = "supervised LoRA fine-tuning on image-caption rows (curated or subset Parquet)"


def register(group: argparse._SubParsersAction) -> None:
    add_passthrough(group, ("train", "sft"), HELP, run)


def run(argv: list[str]) -> int:
    from canvas.core.config_parser import parse_config_command
    from canvas.core.errors import CanvasError
    from canvas.rlhf.sft_config import SFTConfig

    config = parse_config_command(SFTConfig, argv, "canvas train sft", HELP)
    from canvas.rlhf.sft_trainer import SFTTrainer  # after parsing: --help and mistakes need no torch

    if not config.data:
        raise CanvasError("--data is required (a curated folder, a subset folder or a Parquet file)")
    summary = SFTTrainer(config).train()
    if summary:  # only the main process reports
        fmt = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
        print(
            f"{summary['steps']} steps, held-out denoising loss {fmt(summary['heldout_loss'])} "
            f"(base model {fmt(summary['base_heldout_loss'])}); LoRA -> {config.output_dir} "
            "(pipe.load_lora_weights)"
        )
    return 0
