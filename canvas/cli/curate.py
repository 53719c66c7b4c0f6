"""`canvas curate`: curate a pile of image-text pairs (Apache Beam)."""

from __future__ import annotations

import argparse

from canvas.cli._common import not_built


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "curate",
        help="curate a pile of image-text pairs (Apache Beam)",
        description="curate a pile of image-text pairs (Apache Beam)",
    )
    parser.set_defaults(func=not_built(3, "canvas curate"))
