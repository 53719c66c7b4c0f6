"""`canvas eval`: sample base vs tuned (LoRA) with the same seeds, score both, report the win rate."""

from __future__ import annotations

import argparse
from pathlib import Path

from canvas.cli._common import existing_path


def register(sub: argparse._SubParsersAction) -> None:
    help = "sample base vs tuned models with the same seeds and score them"
    parser = sub.add_parser("eval", help=help, description=help)
    parser.add_argument(
        "--pretrained", default="tiny", help="'tiny', a pipeline folder or hub id (default: tiny)"
    )
    parser.add_argument(
        "--lora", required=True, type=existing_path, help="LoRA folder (canvas train dpo/ddpo output)"
    )
    parser.add_argument(
        "--prompts",
        required=True,
        type=existing_path,
        help="prompt file: .txt or .txt.gz (one prompt a line, # comments) or a Parquet's caption column",
    )
    parser.add_argument(
        "--reward", default="brightness", help="reward-model folder or brightness, jpeg_compressibility, ..."
    )
    parser.add_argument("--output", type=Path, default=Path("eval-output"), help="output folder")
    parser.add_argument(
        "--seed", type=int, default=0, help="prompt i is sampled with seed SEED+i (default 0)"
    )
    parser.add_argument("--steps", type=int, default=20, help="inference steps (default 20)")
    parser.add_argument(
        "--guidance-scale", type=float, default=7.5, help="classifier-free guidance (default 7.5)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="images per pipeline call (default 16)")
    parser.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    from canvas.rlhf.evaluation import GRID_FILE, SUMMARY_FILE, evaluate

    summary = evaluate(
        args.pretrained,
        args.lora,
        args.prompts,
        args.reward,
        args.output,
        seed=args.seed,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        batch_size=args.batch_size,
    )
    low, high = summary["win_rate_ci95"]
    print(
        f"tuned beats base on {summary['win_rate']:.1%} of {summary['n_prompts']} prompts "
        f"(95% CI {low:.1%}-{high:.1%}); mean {summary['reward']} {summary['base_mean_reward']:.4g} -> "
        f"{summary['tuned_mean_reward']:.4g}"
    )
    print(f"wrote {args.output / SUMMARY_FILE} and {args.output / GRID_FILE}")
    return 0
