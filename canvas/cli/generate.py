"""`canvas generate`: generate candidate image pairs for prompts (Apache Beam + diffusers)."""

from __future__ import annotations

import argparse

from canvas.core.config_parser import add_config_arguments, config_from_args
from canvas.pipelines.generate_config import GenerateConfig

HELP = "generate candidate image pairs for prompts (Apache Beam + diffusers)"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "generate",
        help=HELP,
        description=HELP + ". Writes OUTPUT/candidates.parquet (pair_id, prompt, image_0, image_1 as PNG, "
        "seed_0, seed_1, model, scheduler, steps, guidance) and OUTPUT/rejected_prompts.jsonl. Extra "
        "arguments are Beam pipeline options, e.g. --direct_num_workers=2 --direct_running_mode=multi_processing.",
    )
    add_config_arguments(parser, GenerateConfig)
    parser.set_defaults(func=_generate, accepts_extra_args=True)


def _generate(args: argparse.Namespace) -> int:
    from canvas.pipelines.generate import run_generation

    c = config_from_args(GenerateConfig, args)
    summary = run_generation(
        c.prompts,
        c.output,
        pretrained=c.pretrained,
        images_per_prompt=c.images_per_prompt,
        steps=c.steps,
        guidance=c.guidance,
        seed=c.seed,
        threads=c.threads,
        beam_args=args.extra_args,
        overwrite=c.overwrite,
    )
    print(
        f"{summary['pairs']} pairs from {summary['prompts_kept']} prompts -> {summary['output']} "
        f"({summary['prompts_rejected']} prompts rejected, see rejected_prompts.jsonl)"
    )
    return 0
