"""`canvas data ...`: sample data sets."""

from __future__ import annotations

import argparse

from canvas.cli._common import add_group
from canvas.core.config_parser import add_config_arguments, config_from_args
from canvas.core.setup_config import SampleDataConfig


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "data", "sample and inspect image-text data")
    sample = group.add_parser(
        "sample",
        help="write the built-in sample image-text set (real photos from PyPI wheels + planted problems)",
        description="Write a Parquet of real photos shipped inside PyPI wheels (scikit-image, scikit-learn, "
        "matplotlib) with hand-written captions, plus planted exact duplicates, near duplicates and broken "
        "records. Columns: key, caption, image. A FILE.truth.json beside it says what each key is.",
    )
    add_config_arguments(sample, SampleDataConfig)
    sample.set_defaults(func=_sample)


def _sample(args: argparse.Namespace) -> int:
    from canvas.core.sample_data import write_sample

    config = config_from_args(SampleDataConfig, args)
    summary = write_sample(config.output)
    print(f"wrote {summary['rows']} rows to {config.output} ({summary['by_kind']})")
    return 0
