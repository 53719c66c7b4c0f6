"""`canvas generate`: generate candidate image pairs for prompts (Apache Beam + diffusers)."""

from __future__ import annotations

import argparse

from canvas.cli._common import not_built


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "generate",
        help="generate candidate image pairs for prompts (Apache Beam + diffusers)",
        description="generate candidate image pairs for prompts (Apache Beam + diffusers)",
    )
    parser.set_defaults(func=not_built(4, "canvas generate"))
