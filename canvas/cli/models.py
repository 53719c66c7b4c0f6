"""`canvas models ...`: build and inspect the offline model presets."""

from __future__ import annotations

import argparse
import time

from canvas.cli._common import add_group
from canvas.core.config_parser import add_config_arguments, config_from_args
from canvas.core.setup_config import ModelsInitConfig


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "models", "build and inspect model presets (offline, seeded)")
    init = group.add_parser(
        "init",
        help="build the tiny CLIP and a pipeline preset into DIR",
        description="Build every model of a preset with a fixed seed and save it (safetensors). "
        "Default location: $CANVAS_HOME/presets/PRESET (CANVAS_HOME defaults to ~/.cache/canvas-rlhf).",
    )
    add_config_arguments(init, ModelsInitConfig)
    init.set_defaults(func=_init)


def _init(args: argparse.Namespace) -> int:
    from canvas.core.presets.loading import init_preset

    config = config_from_args(ModelsInitConfig, args)
    start = time.perf_counter()
    paths = init_preset(config.preset, config.dir, rebuild=config.rebuild)
    for name, path in paths.items():
        print(f"{name}: {path}")
    print(f"preset {config.preset!r} ready in {time.perf_counter() - start:.1f} s")
    return 0
