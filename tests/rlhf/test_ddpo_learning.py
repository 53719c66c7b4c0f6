"""DDPO learns: JPEG compressibility of fresh samples rises over the base model's (fixed seeds, CPU).

Base model: the `tiny-photo` preset (the tiny SD-1.5-style pipeline pretrained on photo crops; the random
`tiny` preset's VAE decoder barely responds to its latents, so no reward moves there).

Measured 2026-11-28 (these settings: 40 epochs of 32 samples, lr 3e-3; fresh samples drawn with seed
12345 and the same noise for base and tuned, 32 of them): the base model's samples are 1.213 kB, the
tuned model's 1.090 kB: the reward of fresh samples rises 10.2% (10.1% with one torch thread). Shorter
runs at other seeds and on a preset built with other float rounding: 20 epochs +5.4%, +5.9%, +9.3%;
16 samples per epoch for 30 epochs +2.6% to +9.2%. Asserted: +5%.

The issue's goal, +20%, is NOT reached: the training reward levels off near -1.09 (from -1.21) after
about 35 epochs, and 80 epochs end at +7.7% on fresh samples; with 16 samples per epoch it levelled off after about
30 epochs (100 epochs: +2.9%), and larger steps degrade the denoiser instead (lr 3e-2: files +47%; lr
5e-3: +3.1%). DDPO's paper used 256 samples per epoch; `bench/bench_ddpo_learning.py` (128 samples per
epoch, training batch 16) reaches +14.9% in 40 epochs and +16.2% in 80 (~25 min on one core).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhf.ddpo_config import DDPOConfig
from rlhf.ddpo_trainer import DDPOTrainer

PROMPTS = ["a cat", "a brick wall", "the moon", "a cup of coffee"]
MIN_GAIN = 0.05


@pytest.mark.slow
def test_ddpo_with_jpeg_compressibility_raises_the_reward_of_fresh_samples(
    tmp_path: Path, tiny_presets
) -> None:
    config = DDPOConfig(
        output_dir=str(tmp_path), pretrained="tiny-photo", reward="jpeg_compressibility",
        mixed_precision="no", seed=0, num_epochs=40, save_freq=100, num_checkpoint_limit=1,
        # No guidance (half the UNet calls) and 8 DDIM steps, all trained: cheap epochs.
        sample_num_steps=8, sample_guidance_scale=1.0, train_cfg=False, train_timestep_fraction=1.0,
        sample_batch_size=8, sample_num_batches_per_epoch=4, train_batch_size=4, train_num_inner_epochs=1,
        # A clip range 500x the paper's and 10x its learning rate: 40 small epochs must move the policy.
        train_learning_rate=3e-3, train_clip_range=5e-2, per_prompt_stat_tracking=False,
        # LoRA on the convolutions too: they shape the latents (hence the decoded texture) directly.
        lora_target_modules=["to_q", "to_k", "to_v", "to_out.0", "conv_out", "conv_in", "conv1", "conv2"],
        sample_grid_freq=0, eval_num_samples=0,
    )  # fmt: skip
    trainer = DDPOTrainer(config, prompts=PROMPTS)
    trainer.train()
    # Fresh samples: a seed no training epoch used; base and tuned drawn with the same noise.
    result = trainer.evaluate(32, seed=12345)
    base, tuned = result["eval_reward_base"], result["eval_reward_tuned"]  # minus kB
    gain = (tuned - base) / abs(base)
    print(
        f"DDPO compressibility: base {-base:.3f} kB, tuned {-tuned:.3f} kB, reward {gain:+.1%}"
    )  # -s shows it
    assert gain > MIN_GAIN, f"JPEG size of fresh samples: base {-base:.3f} kB, tuned {-tuned:.3f} kB"
