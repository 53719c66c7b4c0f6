"""`canvas index ...`: a FAISS index over a curated set's CLIP image embeddings, and queries on it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from canvas.cli._common import add_group, existing_path
from canvas.core.errors import CanvasError


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "index", "index curated image embeddings (FAISS) and search them")
    build = group.add_parser(
        "build",
        help="build a FAISS index over DIR/curated/*.parquet embeddings",
        description="Index the curated set's L2-normalised CLIP image embeddings (cosine via inner product). "
        "`auto` picks an exact flat index up to 100k rows and PCA + IVF + 6-bit residual codes above (about 1/8.5 of float32), "
        "trained on a seeded sample. Writes index.faiss, rows.parquet (row -> key) and index.json.",
    )
    build.add_argument(
        "--curated", type=existing_path, required=True, help="curated folder (from `canvas curate`)"
    )
    build.add_argument("--output", type=Path, required=True, help="index folder to write")
    build.add_argument(
        "--factory",
        default="auto",
        help="FAISS index_factory string, e.g. 'IVF1024,PQ64' or 'HNSW32', or 'auto' (default)",
    )
    build.add_argument("--train-sample", type=int, default=256_000, help="vectors to train IVF/PQ on")
    build.add_argument("--seed", type=int, default=0, help="seed of the training sample and k-means")
    build.set_defaults(func=_build)

    query = group.add_parser(
        "query",
        help="nearest curated rows to a text or an image (JSON lines)",
        description="Embed the query with the CLIP model the index was built with and print one JSON object "
        "per result: rank, key, score (cosine), row, caption.",
    )
    query.add_argument(
        "--index", type=existing_path, required=True, help="index folder (`canvas index build`)"
    )
    what = query.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="query text")
    # a plain path: `open_image_file` checks it and says what is wrong in one line
    what.add_argument("--image", type=Path, help="query image file")
    query.add_argument(
        "-k", type=int, default=None, help="number of results (default 10 without --min-score)"
    )
    query.add_argument("--min-score", type=float, default=None, help="only results with cosine >= S")
    query.add_argument(
        "--clip-model", default=None, help="assert the query model (default: the one the index remembers)"
    )
    query.add_argument("--clip-pretrained", default=None, help="with --clip-model: its weights tag or file")
    query.set_defaults(func=_query)


def _build(args: argparse.Namespace) -> int:
    from canvas.curation.index import build_index

    manifest = build_index(args.curated, args.output, args.factory, args.train_sample, args.seed)
    print(
        f"indexed {manifest.num_rows} rows ({manifest.embedding_dim}-d, {manifest.clip_model}) with "
        f"{manifest.factory!r} into {args.output}"
    )
    return 0


def _query(args: argparse.Namespace) -> int:
    from canvas.core.images import open_image_file
    from canvas.curation.index import CuratedIndex, QueryEncoder

    if args.k is not None and args.k < 1:
        raise CanvasError(f"-k must be at least 1, got {args.k}")
    # Opened first: a bad image file is reported before the index and the model load.
    image = open_image_file(args.image) if args.image is not None else None
    index = CuratedIndex.load(args.index)
    if args.clip_model is not None:
        index.check_model(args.clip_model, args.clip_pretrained, "the query")
    encoder = QueryEncoder(index.manifest)
    vector = encoder.texts([args.text])[0] if args.text is not None else encoder.images([image])[0]
    k = args.k if args.k is not None or args.min_score is not None else 10
    for rank, hit in enumerate(index.search_hits(vector, k, args.min_score), start=1):
        print(
            json.dumps(
                {
                    "rank": rank,
                    "key": hit.key,
                    "score": round(hit.score, 6),
                    "row": hit.row,
                    "caption": hit.caption,
                }
            )
        )
    return 0
