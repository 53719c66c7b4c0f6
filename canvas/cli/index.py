"""`canvas index ...`: a FAISS index over a curated set's CLIP image embeddings, and queries on it."""

from __future__ import annotations

import argparse
import json

from canvas.cli._common import add_group
from canvas.core.config_parser import add_config_arguments, config_from_args
from canvas.curation.index_config import IndexBuildConfig, IndexQueryConfig


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "index", "index curated image embeddings (FAISS) and search them")
    build = group.add_parser(
        "build",
        help="build a FAISS index over DIR/curated/*.parquet embeddings",
        description="Index the curated set's L2-normalised CLIP image embeddings (cosine via inner product). "
        "`auto` picks an exact flat index up to 100k rows and PCA + IVF + 6-bit residual codes above (about 1/8.5 of float32), "
        "trained on a seeded sample. Writes index.faiss, rows.parquet (row -> key) and index.json.",
    )
    add_config_arguments(build, IndexBuildConfig)
    build.set_defaults(func=_build)

    query = group.add_parser(
        "query",
        help="nearest curated rows to a text or an image (JSON lines)",
        description="Embed the query with the CLIP model the index was built with and print one JSON object "
        "per result: rank, key, score (cosine), row, caption.",
    )
    add_config_arguments(query, IndexQueryConfig)
    query.set_defaults(func=_query)


def _build(args: argparse.Namespace) -> int:
    from canvas.curation.index import build_index

    config = config_from_args(IndexBuildConfig, args)
    manifest = build_index(config.curated, config.output, config.factory, config.train_sample, config.seed)
    print(
        f"indexed {manifest.num_rows} rows ({manifest.embedding_dim}-d, {manifest.clip_model}) with "
        f"{manifest.factory!r} into {config.output}"
    )
    return 0


def _query(args: argparse.Namespace) -> int:
    from canvas.core.images import open_image_file
    from canvas.curation.index import CuratedIndex, QueryEncoder

    config = config_from_args(IndexQueryConfig, args)
    # Opened first: a bad image file is reported before the index and the model load.
    image = open_image_file(config.image) if config.image is not None else None
    index = CuratedIndex.load(config.index)
    if config.clip_model is not None:
        index.check_model(config.clip_model, config.clip_pretrained, "the query")
    encoder = QueryEncoder(index.manifest, config.clip_pretrained)
    vector = encoder.texts([config.text])[0] if config.text is not None else encoder.images([image])[0]
    for rank, hit in enumerate(index.search_hits(vector, config.limit, config.min_score), start=1):
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
