"""clip-retrieval's embeddings folder as a pool without images.

Layout (rom1504/clip-retrieval, `clip_inference/writer.py`): `ROOT/img_emb/img_emb_N.npy`,
`ROOT/text_emb/text_emb_N.npy` and `ROOT/metadata/metadata_N.parquet` for each output partition N (the
same zero-padded N in all three). The `.npy` arrays hold one L2-normalised float16 row per metadata row,
in the same order. The metadata has `image_path` and `caption`, plus the columns of the reader's
metadata JSON (img2dataset's `key`, `url`, `original_width`, `original_height`, ..., and `uid` when the
shards were DataComp's).

A row's key is its `uid` when there is one (the DataComp submission file can then be written), else
its `key`, else its `image_path`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import pyarrow.parquet as pq

from canvas.core.errors import CanvasError
from canvas.curation.records import RawRecord
from canvas.curation.sources import original_size

_METADATA = re.compile(r"^(?P<root>.*)/metadata/metadata_(?P<part>\d+)\.parquet$")
KEY_COLUMNS = ("uid", "key", "image_path")  # the first present names a row
# clip-retrieval's default model (`clip_model="ViT-B/32"`) and ViT-L/14, told apart by the width
CLIP_MODEL_OF_WIDTH = {512: "ViT-B-32", 768: "ViT-L-14"}


def is_metadata_shard(path: str) -> bool:
    """`ROOT/metadata/metadata_N.parquet`, as clip-retrieval inference writes it."""
    return _METADATA.match(path) is not None


def embedding_paths(metadata_path: str) -> tuple[str, str]:
    """The (image, text) `.npy` files aligned with one metadata shard."""
    match = _METADATA.match(metadata_path)
    if match is None:
        raise CanvasError(f"{metadata_path}: not a clip-retrieval metadata/metadata_N.parquet shard")
    root, part = match["root"], match["part"]
    return f"{root}/img_emb/img_emb_{part}.npy", f"{root}/text_emb/text_emb_{part}.npy"


def npy_shape(handle: BinaryIO) -> tuple[int, ...]:
    """An `.npy` array's shape from its header alone (nothing is loaded)."""
    version = np.lib.format.read_magic(handle)
    shape, _, _ = np.lib.format._read_array_header(handle, version)  # noqa: SLF001
    return tuple(shape)


def check_shard(path: str, rows: int, columns: list[str], img: tuple[int, ...], txt: tuple[int, ...]) -> int:
    """The embedding width, or a one-line error when the shard's parts do not fit together."""
    if "caption" not in columns:
        raise CanvasError(f"{path}: no `caption` column (clip-retrieval writes it when text is enabled)")
    if not any(c in columns for c in KEY_COLUMNS):
        raise CanvasError(f"{path}: none of {', '.join(KEY_COLUMNS)} to name the rows")
    img_path, txt_path = embedding_paths(path)
    for name, shape in ((img_path, img), (txt_path, txt)):
        if len(shape) != 2 or shape[0] != rows:
            raise CanvasError(f"{name}: shape {shape}, expected ({rows}, dim) for {path}")
    if img[1] != txt[1]:
        raise CanvasError(f"{img_path} and {txt_path} differ in width ({img[1]} vs {txt[1]})")
    return int(img[1])


def read_shard(
    parquet: BinaryIO, img_npy: BinaryIO, txt_npy: BinaryIO, path: str, index: int
) -> Iterator[RawRecord]:
    """One metadata shard + its two `.npy` files -> RawRecords without images, with both embeddings."""
    meta = pq.ParquetFile(parquet)
    names = meta.schema_arrow.names
    key_column = next((c for c in KEY_COLUMNS if c in names), None)
    if key_column is None or "caption" not in names:
        raise CanvasError(f"{path}: needs `caption` and one of {', '.join(KEY_COLUMNS)}")
    wanted = [key_column, "caption", *(c for c in ("original_width", "original_height") if c in names)]
    table = meta.read(columns=wanted)  # not the exif, url, ... columns
    img = np.asarray(np.load(img_npy), dtype=np.float32)
    txt = np.asarray(np.load(txt_npy), dtype=np.float32)
    if len(img) != table.num_rows or len(txt) != table.num_rows:
        raise CanvasError(
            f"{path}: {len(img)} image and {len(txt)} text embeddings for {table.num_rows} rows"
        )
    missing = [None] * table.num_rows
    column = {c: table.column(c).to_pylist() if c in table.column_names else missing for c in wanted}
    width = column.get("original_width", missing)
    height = column.get("original_height", missing)
    for row in range(table.num_rows):
        yield RawRecord(
            key="" if column[key_column][row] is None else str(column[key_column][row]),
            caption=column["caption"][row],
            image=None,
            source=f"{path}#{row}",
            ordinal=(index, row),
            embedding=img[row],
            text_embedding=txt[row],
            **original_size(width[row], height[row]),
        )
