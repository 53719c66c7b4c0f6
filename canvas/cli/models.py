"""`canvas models ...`: build and inspect the offline model presets."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from canvas.cli._common import add_group
from canvas.core.presets.registry import PIPELINE_PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "models", "build and inspect model presets (offline, seeded)")
    init = group.add_parser(
        "init",
        help="build the tiny CLIP and a pipeline preset into DIR",
        description="Build every model of a preset with a fixed seed and save it (safetensors). "
        "Default location: $CANVAS_HOME/presets/PRESET (CANVAS_HOME defaults to ~/.cache/canvas-rlhf).",
    )
    init.add_argument(
        "--preset",
        default="tiny",
        choices=list(PIPELINE_PRESETS),
        help="pipeline preset to build beside the tiny CLIP (default: tiny); "
        + "; ".join(f"{p.name}: {p.description}" for p in PIPELINE_PRESETS.values()),
    )
    init.add_argument("--dir", type=Path, default=None, help="root folder instead of $CANVAS_HOME")
    init.set_defaults(func=_init)


def _init(args: argparse.Namespace) -> int:
    from canvas.core.presets.loading import init_preset

    start = time.perf_counter()
    paths = init_preset(args.preset, args.dir)
    for name, path in paths.items():
        print(f"{name}: {path}")
    print(f"built preset {args.preset!r} in {time.perf_counter() - start:.1f} s")
    return 0
