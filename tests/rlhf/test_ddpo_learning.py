"""DDPO learns: JPEG compressibility of fresh samples rises over the base model's (fixed seeds, CPU).

Base model: the `tiny-photo` preset (the tiny SD-1.5-style pipeline pretrained on photo crops; the random
`tiny` preset's VAE decoder barely responds to its latents, so no reward moves there). The run uses both
cores as two training processes under torchrun (gloo), as several GPUs would under `accelerate launch`:
each process samples its own 32 trajectories per epoch, advantages come from all 64 rewards, and the
gradients are averaged across processes.

The recipe is `rlhf/recipes/ddpo_jpeg_tiny_photo_5min.yaml`: 26 epochs of 2 x 32 samples, 16 DDIM steps,
training batch 8 per process, lr 3e-3, and a curriculum: the first 6 epochs train only the sampler's first 6
steps (where ~80% of a sample's reward variance is decided), later epochs every step, each step against a
per-step baseline (the reward of the sampler's predicted clean image before it), and only the half of the
(sample, step) pairs with the largest |advantage| go through the UNet; 4 trained steps per UNet call and
sampling with the LoRA merged (seconds only, the same objective). Measured 2026-12-04 on 2 cores (Intel
Xeon), 32 fresh samples drawn with a seed no epoch used (the same noise for base and tuned; base ~1.25 kB):
the reward of fresh samples rises by +21.3% / +22.4% / +21.1% / +21.2% / +20.8% (run seeds 0-4), 190-206 s
of training each (issue 16's +20% in <= 5 minutes). The quick recipe the test ran before (`ddpo_jpeg_tiny_photo_quick.yaml`,
no baseline, every pair, 20 epochs) gave +17.5% in 163 s here, +12.8% to +15.1% in ~245 s on an AMD
machine. Keeping the smallest-advantage pairs instead (a broken selection) gave +3.4%: the test failed.

Asserted: +15%: the smallest seed minus twice the spread (1.6 points) is 17.6%, less the 2.2 points the
same recipe without the pair selection lost on the AMD machine's build of the preset (+18.7% / +18.0%
there, +20.2% / +20.9% here), rounded down. RL runs are chaotic under float rounding: a run repeats bit for
bit on one machine, but another CPU is another draw, so the margin comes from the spread over seeds, not
from one run.

The longer recipe, `rlhf/recipes/ddpo_jpeg_tiny_photo.yaml` (28 epochs of 2 x 96 samples, all steps), reaches
+20.7% in ~11 minutes where it was tuned; `bench/bench_ddpo_learning.py` runs recipes beyond this budget, and
docs/benchmarks.md has the runs. The preset bounds the reward: even flat latents decode to a 0.91 kB JPEG
(the VAE decoder adds texture; a flat 32x32 JPEG is ~0.65 kB), about +26% over the base.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canvas.rlhf.ddpo_config import RECIPES_DIR

PROMPTS = ["a cat", "a brick wall", "the moon", "a cup of coffee"]
MIN_GAIN = 0.15

RECIPE = RECIPES_DIR / "ddpo_jpeg_tiny_photo_5min.yaml"


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
