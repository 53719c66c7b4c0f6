"""`canvas curate`'s output: `DIR/curated/part-NNNNN-of-MMMMM.parquet` (kept rows) and
`DIR/rejected/part-...parquet` (one row per rejected record, with its reason).

Rows are spread over shards by a hash of their key (`shard_of`) and sorted by (key, source) inside a shard,
in row groups of `ROW_GROUP_ROWS`, so a reader finds one key by opening one shard and one row group.
"""

from __future__ import annotations

import zlib

import pyarrow as pa

__all__ = [
    "CURATED_SUBDIR",
    "REJECTED_SCHEMA",
    "REJECTED_SUBDIR",
    "ROW_GROUP_ROWS",
    "curated_schema",
    "shard_name",
    "shard_of",
]

CURATED_SUBDIR = "curated"
REJECTED_SUBDIR = "rejected"
ROW_GROUP_ROWS = 512  # rows of ~25 kB images: ~13 MB a group

REJECTED_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("duplicate_of", pa.string()),
        ("score", pa.float32()),
        ("source", pa.string()),
        ("clip_score", pa.float32()),
        ("nsfw_score", pa.float32()),
        ("cluster_id", pa.int64()),
        ("thumbnail", pa.binary()),
    ]
)


def curated_schema(embedding_dim: int | None) -> pa.Schema:
    """The curated rows' schema; `embedding_dim` None when CLIP is off (the column is then all null and
    variable-length: pyarrow cannot read back a fixed-size list column holding nulls)."""
    embedding = pa.list_(pa.float32()) if embedding_dim is None else pa.list_(pa.float32(), embedding_dim)
    return pa.schema(
        [
            ("key", pa.string()),
            ("caption", pa.string()),
            ("image", pa.binary()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("sha256", pa.string()),
            ("phash", pa.string()),  # 16 hex digits, most significant bit = DCT coefficient (0, 0)
            ("clip_score", pa.float32()),
            ("nsfw_score", pa.float32()),
            ("cluster_id", pa.int64()),
            ("embedding", embedding),
            ("source", pa.string()),
        ]
    )


def shard_of(key: str, n_shards: int) -> int:
    """The shard a row goes to (by its key), so a reader can find one key without a scan."""
    return zlib.crc32(key.encode("utf-8")) % n_shards


def shard_name(shard: int, n_shards: int) -> str:
    """File name of one shard: `part-00003-of-00010.parquet`."""
    return f"part-{shard:05d}-of-{n_shards:05d}.parquet"
