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

from rlhf.ddpo_config import RECIPES_DIR

PROMPTS = ["a cat", "a brick wall", "the moon", "a cup of coffee"]
MIN_GAIN = 0.08

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
