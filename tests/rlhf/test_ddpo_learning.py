"""DDPO learns: JPEG compressibility of fresh samples rises over the base model's (fixed seeds, CPU).

Base model: the `tiny-photo` preset (the tiny SD-1.5-style pipeline pretrained on photo crops; the random
`tiny` preset's VAE decoder barely responds to its latents, so no reward moves there). The run uses both
cores as two training processes under torchrun (gloo), as several GPUs would under `accelerate launch`:
each process samples its own 96 trajectories per epoch, advantages come from all 192 rewards, and the
gradients are averaged across processes.

The recipe is `rlhf/recipes/ddpo_jpeg_tiny_photo.yaml` (28 epochs of 2 x 96 samples, 16 DDIM steps,
training batch 24 per process, lr 3e-3). Measured 2026-11-28, 11.3 minutes of training on 2 cores (32
fresh samples drawn with a seed no epoch used, the same noise for base and tuned): the base model's
samples are 1.241 kB, the tuned model's 0.984 kB, so the reward of fresh samples rises **20.7%**, the
issue's goal (+20%). Asserted: +18%, a margin for other CPUs' float rounding (on this machine these
launches repeat bit for bit: checked with the 2 x 32 variant).

Cheaper recipes level off lower: the reward settles where gradient noise sets it. 2 x 32 samples per
epoch give +17.4% in 40 epochs (6 min) and +19.3% in 64 (10 min, level since epoch ~44); 2 x 64 give
+19.7% in 40 (11.6 min). The preset bounds the reward: even flat latents decode to a 0.91 kB JPEG (the
VAE decoder adds texture; a flat 32x32 JPEG is ~0.65 kB), about +26% over the base
(bench/bench_ddpo_learning.py prints these bounds; docs/benchmarks.md has the runs).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canvas.rlhf.ddpo_config import RECIPES_DIR

PROMPTS = ["a cat", "a brick wall", "the moon", "a cup of coffee"]
MIN_GAIN = 0.18

RECIPE = RECIPES_DIR / "ddpo_jpeg_tiny_photo.yaml"


@pytest.mark.slow
def test_ddpo_with_jpeg_compressibility_raises_the_reward_of_fresh_samples(
    tmp_path: Path, tiny_presets, canvas_in_two_processes
) -> None:
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "run"
    canvas_in_two_processes(
        ["train", "ddpo", "--config", str(RECIPE), "--prompts", str(tmp_path / "prompts.txt"),
         "--output", str(out)],
        timeout=1800,
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
