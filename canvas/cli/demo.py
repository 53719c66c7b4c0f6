"""`canvas demo`: the whole loop on the tiny presets and the sample data, offline."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    help = "run the whole loop on the tiny presets and sample data (offline) and write report.html"
    parser = sub.add_parser(
        "demo",
        help=help,
        description=help + ". Stages: sample data -> curate -> generate -> Label Studio push -> simulated "
        "annotators -> pull -> train reward -> train DPO -> train DDPO -> eval -> report.",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("demo-output"), help="output folder (default: demo-output)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="shortened run (fewer pairs, steps, epochs), as CI runs it"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every stage (default: 0)")
    parser.add_argument(
        "--pretrained",
        default="tiny-photo",
        help="diffusion pipeline: preset name, folder or hub id (default: tiny-photo)",
    )
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from canvas.loop import DemoConfig, run_demo

    run_demo(DemoConfig(output=args.output, quick=args.quick, seed=args.seed, pretrained=args.pretrained))
    return 0
