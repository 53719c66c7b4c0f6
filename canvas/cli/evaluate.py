"""`canvas eval`: sample base vs tuned models and score them."""

from __future__ import annotations

import argparse

from canvas.cli._common import not_built


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="sample base vs tuned models and score them",
        description="sample base vs tuned models and score them",
    )
    parser.set_defaults(func=not_built(5, "canvas eval"))
