"""DRaFT learns: brightness of fresh samples rises over the base model's (fixed seeds, CPU, one thread).

Base model: the `tiny-photo` preset (the one the DDPO learning test uses). DRaFT-1 (gradient through the
last of 10 DDIM steps and the VAE decoder), batch 8, lr 3e-3, 10 optimizer steps = 80 reward queries;
16 fresh samples from a seed no step used, the same noise for base and tuned. One torch thread: under
other load two threads oversubscribe the cores (a step took 100 s instead of 10 s on a loaded machine).

MEASURED_PLACEHOLDER
"""

from __future__ import annotations

from pathlib import Path

import pytest

from canvas.core.presets.photo import torch_threads
from canvas.rlhf.draft_config import DraftConfig
from canvas.rlhf.draft_trainer import DraftTrainer

PROMPTS = ["a cat", "a brick wall", "the moon", "a cup of coffee"]
MIN_GAIN = 0.0  # MARGIN_PLACEHOLDER


@pytest.mark.slow
def test_draft_raises_the_brightness_of_fresh_samples(tmp_path: Path, tiny_presets) -> None:
    config = DraftConfig(
        output_dir=str(tmp_path / "run"), pretrained="tiny-photo", reward="brightness", sample_num_steps=10,
        max_steps=10, train_batch_size=8, learning_rate=3e-3, checkpointing_steps=10, eval_num_samples=16,
        tensorboard=False, seed=0,
    )  # fmt: skip
    with torch_threads(1):
        summary = DraftTrainer(config, prompts=PROMPTS).train()
    base, tuned = summary["eval_reward_base"], summary["eval_reward_tuned"]
    print(f"DRaFT brightness: base {base:.4f}, tuned {tuned:.4f}, {summary['training_seconds']:.1f} s")  # -s shows it
    assert summary["reward_queries"] == 80
    assert tuned - base > MIN_GAIN, f"brightness of fresh samples: base {base:.4f}, tuned {tuned:.4f}"
