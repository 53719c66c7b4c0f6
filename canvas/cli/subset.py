"""`canvas subset`: a targeted slice of a curated set chosen by text queries (Parquet + contact sheet)."""

from __future__ import annotations

import argparse

from canvas.core.config_parser import add_config_arguments, config_from_args
from canvas.curation.index_config import SubsetConfig


def register(sub: argparse._SubParsersAction) -> None:
    help = "select curated rows by text queries into a Parquet subset (same schema) + HTML contact sheet"
    parser = sub.add_parser(
        "subset",
        help=help,
        description=help + ". A row's score is its best cosine to any --text; rows closer to an "
        "--exclude-text than to their best --text (or, with --exclude-min-score, at least that close to one) "
        "are dropped. Writes OUTPUT/subset.parquet, subset.json (scores) and contact_sheet.html.",
    )
    add_config_arguments(parser, SubsetConfig)
    parser.set_defaults(func=_subset)


def _subset(args: argparse.Namespace) -> int:
    from canvas.curation.subset import SubsetQuery, write_subset

    config = config_from_args(SubsetConfig, args)
    query = SubsetQuery(
        config.text, config.exclude_text, config.k, config.min_score, config.exclude_min_score
    )
    summary = write_subset(config.curated, config.index, query, config.output, config.clip_pretrained)
    print(
        f"selected {summary['rows']} rows into {config.output}/subset.parquet (contact_sheet.html beside it)"
    )
    return 0
