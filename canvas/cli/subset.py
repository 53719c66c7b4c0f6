"""`canvas subset`: a targeted slice of a curated set chosen by text queries (Parquet + contact sheet)."""

from __future__ import annotations

import argparse
from pathlib import Path

from canvas.cli._common import existing_path


def register(sub: argparse._SubParsersAction) -> None:
    help = "select curated rows by text queries into a Parquet subset (same schema) + HTML contact sheet"
    parser = sub.add_parser(
        "subset",
        help=help,
        description=help + ". A row's score is its best cosine to any --text; rows closer to an "
        "--exclude-text than to their best --text (or, with --exclude-min-score, at least that close to one) "
        "are dropped. Writes OUTPUT/subset.parquet, subset.json (scores) and contact_sheet.html.",
    )
    parser.add_argument("--curated", type=existing_path, required=True, help="curated folder")
    parser.add_argument("--index", type=existing_path, required=True, help="its index (`canvas index build`)")
    parser.add_argument("--text", action="append", required=True, help="include query (repeatable)")
    parser.add_argument("--exclude-text", action="append", default=[], help="exclude query (repeatable)")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("-k", type=int, help="keep the best N rows")
    size.add_argument("--min-score", type=float, help="keep every row with cosine >= S")
    parser.add_argument(
        "--exclude-min-score", type=float, default=None, help="drop rows with cosine >= S to an exclude text"
    )
    parser.add_argument("--output", type=Path, required=True, help="output folder")
    parser.set_defaults(func=_subset)


def _subset(args: argparse.Namespace) -> int:
    from canvas.curation.subset import SubsetQuery, write_subset

    query = SubsetQuery(args.text, args.exclude_text, args.k, args.min_score, args.exclude_min_score)
    summary = write_subset(args.curated, args.index, query, args.output)
    print(f"selected {summary['rows']} rows into {args.output}/subset.parquet (contact_sheet.html beside it)")
    return 0
