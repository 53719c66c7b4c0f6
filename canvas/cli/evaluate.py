"""`canvas eval`: sample base vs tuned (LoRA) with the same seeds, score both, report the win rate."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from canvas.core.config_parser import add_config_arguments, config_from_args, must_exist
from canvas.rlhf.eval_config import EvalConfig


def register(sub: argparse._SubParsersAction) -> None:
    help = "sample base vs tuned models with the same seeds and score them"
    parser = sub.add_parser("eval", help=help, description=help)
    add_config_arguments(parser, EvalConfig)
    parser.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    from canvas.rlhf.evaluation import GRID_FILE, SUMMARY_FILE, evaluate

    config = config_from_args(EvalConfig, args)
    must_exist("--lora", config.lora)
    must_exist("--prompts", config.prompts)
    summary = evaluate(**asdict(config))
    low, high = summary["win_rate_ci95"]
    print(
        f"tuned beats base on {summary['win_rate']:.1%} of {summary['n_prompts']} prompts "
        f"(95% CI {low:.1%}-{high:.1%}); mean {summary['reward']} {summary['base_mean_reward']:.4g} -> "
        f"{summary['tuned_mean_reward']:.4g}"
    )
    out = Path(config.output_dir)
    print(f"wrote {out / SUMMARY_FILE} and {out / GRID_FILE}")
    return 0
