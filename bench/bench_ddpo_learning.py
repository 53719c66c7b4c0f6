"""How far DDPO moves JPEG compressibility beyond the CI test's budget (issue goal: +20% over the base).

`tests/rlhf/test_ddpo_learning.py` asserts the gain of a ~3-minute run (32 samples per epoch). This runs
the same recipe with more samples per epoch and larger training batches (less gradient noise per update;
DDPO's paper used 256 samples per epoch) for `--epochs`, then prints the mean JPEG size of fresh samples
(a seed no epoch used; base and tuned drawn with the same noise) and the reward's gain over the base,
with the training reward every few epochs. Base model: the `tiny-photo` preset. Single-threaded torch by
default, so it can run beside other work; timings scale with that.

Usage: .venv/bin/python bench/bench_ddpo_learning.py [--epochs 80] [--batches-per-epoch 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

GOAL = 0.20
PROMPTS = ["a cat", "a brick wall", "the moon", "a cup of coffee"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--batches-per-epoch", type=int, default=16, help="sampling batches of 8 per epoch")
    parser.add_argument("--train-batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--eval-samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from rlhf.ddpo_config import DDPOConfig
    from rlhf.ddpo_trainer import DDPOTrainer
    from rlhf.tracking import read_metrics

    with tempfile.TemporaryDirectory() as out:
        config = DDPOConfig(
            output_dir=out, pretrained="tiny-photo", reward="jpeg_compressibility", mixed_precision="no",
            seed=args.seed, num_epochs=args.epochs, save_freq=10_000, num_checkpoint_limit=1,
            # The CI test's recipe (see its docstring for why each knob differs from DDPO's defaults)...
            sample_num_steps=8, sample_guidance_scale=1.0, train_cfg=False, train_timestep_fraction=1.0,
            train_clip_range=5e-2, per_prompt_stat_tracking=False, train_num_inner_epochs=1,
            lora_target_modules=["to_q", "to_k", "to_v", "to_out.0", "conv_out", "conv_in", "conv1", "conv2"],
            # ... with more samples per epoch and larger training batches.
            sample_batch_size=8, sample_num_batches_per_epoch=args.batches_per_epoch,
            train_batch_size=args.train_batch_size, train_learning_rate=args.learning_rate,
            sample_grid_freq=0, eval_num_samples=0,
        )  # fmt: skip
        started = time.perf_counter()
        trainer = DDPOTrainer(config, prompts=PROMPTS)
        trainer.train()
        seconds = time.perf_counter() - started
        result = trainer.evaluate(args.eval_samples, seed=12345)
        rows = read_metrics(out)
    base, tuned = -result["eval_reward_base"], -result["eval_reward_tuned"]
    gain = (result["eval_reward_tuned"] - result["eval_reward_base"]) / abs(result["eval_reward_base"])
    samples = args.epochs * args.batches_per_epoch * 8
    print(
        f"{args.epochs} epochs x {args.batches_per_epoch * 8} samples ({samples} in all), train batch "
        f"{args.train_batch_size}, lr {args.learning_rate}, {args.threads} torch thread(s): {seconds / 60:.1f} min"
    )
    every = max(1, args.epochs // 10)
    print(
        "training reward (minus kB) every",
        every,
        "epochs:",
        [round(r["reward_mean"], 3) for r in rows][::every],
    )
    print(
        f"fresh samples ({args.eval_samples}, seed 12345): base {base:.3f} kB, tuned {tuned:.3f} kB; "
        f"reward gain {gain:+.1%} (goal {GOAL:+.0%}: {'met' if gain >= GOAL else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
