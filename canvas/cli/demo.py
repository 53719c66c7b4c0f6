"""`canvas demo`: the main job on the embedded default.

Until the whole loop lands (issue 7) it runs what exists: build the tiny presets and write the sample
data set, and says so.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    help = "run the loop on the tiny presets and sample data (offline)"
    parser = sub.add_parser("demo", help=help, description=help)
    parser.add_argument(
        "--output", type=Path, default=Path("demo-output"), help="output folder (default: demo-output)"
    )
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from canvas.presets import init_preset
    from canvas.sample_data import write_sample

    args.output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = init_preset("tiny")
    print(f"[1/2] tiny presets ready ({time.perf_counter() - start:.1f} s): {paths['clip'].parent.parent}")
    start = time.perf_counter()
    summary = write_sample(args.output / "sample.parquet")
    print(
        f"[2/2] sample data: {summary['rows']} rows -> {args.output / 'sample.parquet'} ({time.perf_counter() - start:.1f} s)"
    )
    print("The rest of the loop (curate -> generate -> label -> train -> eval) is not built yet; see README.")
    return 0
