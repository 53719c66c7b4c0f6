"""`canvas demo`: the whole loop on the tiny presets and the sample data, offline."""

from __future__ import annotations

import argparse

from canvas.core.config_parser import add_config_arguments, config_from_args
from canvas.loop.config import DemoConfig


def register(sub: argparse._SubParsersAction) -> None:
    help = "run the whole loop on the tiny presets and sample data (offline) and write report.html"
    parser = sub.add_parser(
        "demo",
        help=help,
        description=help + ". Stages: sample data -> curate -> generate -> Label Studio push -> simulated "
        "annotators -> pull -> train reward -> train DPO -> train DDPO -> train DRaFT -> eval -> "
        "report. Every knob is a "
        "DemoConfig field: a flag, or a key of --config FILE.yaml.",
    )
    add_config_arguments(parser, DemoConfig)
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from canvas.loop.demo import run_demo

    run_demo(config_from_args(DemoConfig, args))
    return 0
