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

from canvas.core.errors import CanvasError
from canvas.curation.embedded_shards import check_embedding_pair, npy_shape, records_with_embeddings
from canvas.curation.records import RawRecord

_METADATA = re.compile(r"^(?P<root>.*)/metadata/metadata_(?P<part>\d+)\.parquet$")
KEY_COLUMNS = ("uid", "key", "image_path")  # the first present names a row
__all__ = ["check_shard", "embedding_paths", "is_metadata_shard", "npy_shape", "read_shard"]
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


def check_shard(path: str, rows: int, columns: list[str], img: tuple[int, ...], txt: tuple[int, ...]) -> int:
    """The embedding width, or a one-line error when the shard's parts do not fit together."""
    if "caption" not in columns:
        raise CanvasError(f"{path}: no `caption` column (clip-retrieval writes it when text is enabled)")
    if not any(c in columns for c in KEY_COLUMNS):
        raise CanvasError(f"{path}: none of {', '.join(KEY_COLUMNS)} to name the rows")
    img_path, txt_path = embedding_paths(path)
    return check_embedding_pair(path, rows, (img_path, img), (txt_path, txt))


def read_shard(
    parquet: BinaryIO, img_npy: BinaryIO, txt_npy: BinaryIO, path: str, index: int
) -> Iterator[RawRecord]:
    """One metadata shard + its two `.npy` files -> RawRecords without images, with both embeddings."""
    yield from records_with_embeddings(
        parquet, KEY_COLUMNS, "caption", np.load(img_npy), np.load(txt_npy), path, index
    )
