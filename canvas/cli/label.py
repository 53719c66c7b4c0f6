"""`canvas label ...`: preference labeling in a real Label Studio server."""

from __future__ import annotations

import argparse

from canvas.cli._common import add_group, not_built


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "label", "run Label Studio, push candidate pairs, pull preferences")
    for name, help in [
        ("server", "start / stop / status of the local Label Studio server"),
        ("push", "push candidate pairs to a Label Studio project"),
        ("pull", "pull annotations into a preference Parquet"),
    ]:
        group.add_parser(name, help=help, description=help).set_defaults(
            func=not_built(4, f"canvas label {name}")
        )
