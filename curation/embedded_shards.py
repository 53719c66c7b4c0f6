"""Metadata shards with aligned embedding arrays and no images: what DataComp pools (`curation/pool.py`)
and clip-retrieval folders (`curation/clip_retrieval.py`) have in common. Each layout names its files
and columns; the header-only shape checks and the row-by-row records are here, once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import BinaryIO

import numpy as np
import pyarrow.parquet as pq

from canvas.core.errors import CanvasError
from canvas.curation.records import RawRecord
from canvas.curation.sources import original_size

SIZE_COLUMNS = ("original_width", "original_height")


def npy_shape(handle: BinaryIO) -> tuple[int, ...]:
    """An `.npy` array's (or `.npz` member's) shape from its header alone (nothing is loaded)."""
    version = np.lib.format.read_magic(handle)
    shape, _, _ = np.lib.format._read_array_header(handle, version)  # noqa: SLF001
    return tuple(shape)


def check_embedding_pair(
    shard: str, rows: int, img: tuple[str, tuple[int, ...]], txt: tuple[str, tuple[int, ...]]
) -> int:
    """The width of an (image, text) pair of embedding arrays, each given as (name, shape), or a one-line
    error when either does not hold one row per metadata row of `shard` or their widths differ."""
    for name, shape in (img, txt):
        if len(shape) != 2 or shape[0] != rows:
            raise CanvasError(f"{name} has shape {tuple(shape)}, expected ({rows}, dim) for {shard}")
    if img[1][1] != txt[1][1]:
        raise CanvasError(f"{img[0]} and {txt[0]} differ in width ({img[1][1]} vs {txt[1][1]})")
    return int(img[1][1])


def records_with_embeddings(
    parquet: BinaryIO,
    key_columns: Sequence[str],
    caption_column: str,
    img: np.ndarray,
    txt: np.ndarray,
    path: str,
    index: int,
) -> Iterator[RawRecord]:
    """One metadata shard's rows as RawRecords without images, carrying their image and text embeddings
    (float16 as stored, else float32). The first of `key_columns` present names the rows. Reads only the
    key, caption and original-size columns (not url, exif, ...)."""
    meta = pq.ParquetFile(parquet)
    present = meta.schema_arrow.names
    key_column = next((c for c in key_columns if c in present), None)
    if key_column is None or caption_column not in present:
        raise CanvasError(f"{path}: needs `{caption_column}` and one of {', '.join(key_columns)}")
    wanted = [key_column, caption_column, *(c for c in SIZE_COLUMNS if c in present)]
    table = meta.read(columns=wanted)
    img, txt = (
        a if a.dtype == np.float16 else a.astype(np.float32) for a in (np.asarray(img), np.asarray(txt))
    )
    if len(img) != table.num_rows or len(txt) != table.num_rows:
        raise CanvasError(
            f"{path}: {len(img)} image and {len(txt)} text embeddings for {table.num_rows} rows"
        )
    missing = [None] * table.num_rows
    column = {c: table.column(c).to_pylist() for c in wanted}
    keys, captions = column[key_column], column[caption_column]
    width, height = (column.get(c, missing) for c in SIZE_COLUMNS)
    for row in range(table.num_rows):
        yield RawRecord(
            key="" if keys[row] is None else str(keys[row]),
            caption=captions[row],
            image=None,
            source=f"{path}#{row}",
            ordinal=(index, row),
            embedding=img[row],
            text_embedding=txt[row],
            **original_size(width[row], height[row]),
        )
