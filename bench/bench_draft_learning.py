"""DRaFT's cost per unit of gain: seconds and reward queries per unit of reward gained on fresh samples.

Runs `canvas.rlhf.draft_trainer.DraftTrainer` on the `tiny-photo` preset (the base the DDPO learning test
uses) with a differentiable reward, once per seed, and prints per seed: the reward of 16 fresh samples
with and without the LoRA (same noise, a seed no step used), the gain, training seconds, reward queries,
and gain per second / per query; then the spread over seeds (what the learning test's margin is set
from). The ratio `tuned / base` is measured against the base model in the same run.

Usage: .venv/bin/python bench/bench_draft_learning.py [--reward brightness] [--steps 10] [--lr 3e-3]
       [--batch 8] [--draft-k 1] [--lv-draws 0] [--seeds 0,1,2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

PROMPTS = ["a cat", "a brick wall", "the moon", "a cup of coffee"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reward", default="brightness")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--draft-k", type=int, default=1)
    parser.add_argument("--lv-draws", type=int, default=0)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from canvas.rlhf.draft_config import DraftConfig
    from canvas.rlhf.draft_trainer import DraftTrainer

    gains = []
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.monotonic()
            config = DraftConfig(
                output_dir=out, pretrained="tiny-photo", reward=args.reward, sample_num_steps=10,
                max_steps=args.steps, train_batch_size=args.batch, learning_rate=args.lr, draft_k=args.draft_k,
                lv_draws=args.lv_draws, checkpointing_steps=args.steps, eval_num_samples=16, tensorboard=False,
                seed=seed,
            )  # fmt: skip
            s = DraftTrainer(config, prompts=PROMPTS).train()
        gain, seconds, queries = s["eval_gain"], s["training_seconds"], s["reward_queries"]
        gains.append(gain)
        row = {
            "seed": seed, "base": round(s["eval_reward_base"], 4), "tuned": round(s["eval_reward_tuned"], 4),
            "tuned/base": round(s["eval_reward_tuned"] / s["eval_reward_base"], 3), "gain": round(gain, 4),
            "train_seconds": round(seconds, 1), "reward_queries": queries,
            "seconds_per_0.1_gain": round(seconds / (gain * 10), 1) if gain > 0 else None,
            "queries_per_0.1_gain": round(queries / (gain * 10), 1) if gain > 0 else None,
            "wall_seconds": round(time.monotonic() - t0, 1),
        }  # fmt: skip
        print(json.dumps(row), flush=True)
    if len(gains) > 1:
        print(
            f"gain over seeds: min {min(gains):.4f} mean {statistics.mean(gains):.4f} sd {statistics.stdev(gains):.4f}"
        )


if __name__ == "__main__":
    main()
