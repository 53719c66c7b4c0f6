"""DDPO learns: JPEG compressibility of fresh samples rises over the base model's (fixed seeds, CPU).

Base model: the `tiny-photo` preset (the tiny SD-1.5-style pipeline pretrained on photo crops; the random
`tiny` preset's VAE decoder barely responds to its latents, so no reward moves there). The run uses both
cores as two training processes under torchrun (gloo), as several GPUs would under `accelerate launch`:
each process samples its own 32 trajectories per epoch, advantages come from all 64 rewards, and the
gradients are averaged across processes.

Measured 2026-11-28 (these settings: 40 epochs of 2 x 32 samples, training batch 8 per process, lr 3e-3;
32 fresh samples drawn with a seed no epoch used and the same noise for base and tuned), about 3 minutes:
the base model's samples are 1.220 kB, the tuned model's 1.051 kB: the reward of fresh samples rises
13.9%. The same recipe in one process (32 samples per epoch, training batch 4) gave +10.2%, and +5.4% to
+9.3% in 20-epoch runs at other seeds. Asserted: +8%.

The issue's goal, +20%, is NOT reached: more samples per update help but flatten
(`bench/bench_ddpo_learning.py`, one process, 128 samples per epoch: +14.9% after 40 epochs, +16.2%
after 80, ~25 min); larger steps degrade the denoiser instead (lr 3e-2: files +47%). A 32x32 JPEG carries
~0.65 kB of fixed header, so +20% means removing 43% of the content bytes (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PROMPTS = ["a cat", "a brick wall", "the moon", "a cup of coffee"]
MIN_GAIN = 0.08

CONFIG = """\
pretrained: tiny-photo
reward: jpeg_compressibility
mixed_precision: "no"
seed: 0
num_epochs: 40
save_freq: 100
num_checkpoint_limit: 1
# No guidance (half the UNet calls) and 8 DDIM steps, all trained: cheap epochs.
sample_num_steps: 8
sample_guidance_scale: 1.0
train_cfg: false
train_timestep_fraction: 1.0
sample_batch_size: 8
sample_num_batches_per_epoch: 4
train_batch_size: 8
train_num_inner_epochs: 1
# A clip range 500x the paper's and 10x its learning rate: 40 small epochs must move the policy.
train_learning_rate: 0.003
train_clip_range: 0.05
per_prompt_stat_tracking: false
# LoRA on the convolutions too: they shape the latents (hence the decoded texture) directly.
lora_target_modules: ["to_q", "to_k", "to_v", "to_out.0", "conv_out", "conv_in", "conv1", "conv2"]
sample_grid_freq: 0
eval_num_samples: 32
"""


@pytest.mark.slow
def test_ddpo_with_jpeg_compressibility_raises_the_reward_of_fresh_samples(
    tmp_path: Path, tiny_presets, canvas_in_two_processes
) -> None:
    (tmp_path / "ddpo.yaml").write_text(CONFIG)
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "run"
    canvas_in_two_processes(
        ["train", "ddpo", "--prompts", str(tmp_path / "prompts.txt"), "--reward", "jpeg_compressibility",
         "--output", str(out), "--config", str(tmp_path / "ddpo.yaml")],
        timeout=1200,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_processes"] == 2
    # Fresh samples: base and tuned drawn with the same noise, from a seed no epoch used.
    base, tuned = summary["eval_reward_base"], summary["eval_reward_tuned"]  # minus kB
    gain = (tuned - base) / abs(base)
    print(
        f"DDPO compressibility: base {-base:.3f} kB, tuned {-tuned:.3f} kB, reward {gain:+.1%}"
    )  # -s shows it
    assert gain > MIN_GAIN, f"JPEG size of fresh samples: base {-base:.3f} kB, tuned {-tuned:.3f} kB"
