"""DataComp-style pools: metadata Parquet shards with aligned `.npz` CLIP embeddings and no images.

Layout (mlfoundations/datacomp, `download_upstream.py` metadata): `SHARD.parquet` with `uid` (32 hex
digits, a 128-bit hash), `text`, `original_width`, `original_height` (and `url`, `key`, ...), beside
`SHARD.npz` whose arrays `b32_img`, `b32_txt`, `l14_img`, `l14_txt` hold one L2-normalised row per
Parquet row, in the same order. Nobody re-embeds a pool: the CLIP score is `img . txt` of the chosen
model's rows, and SemDeDup clusters the image rows.

The subset DataComp's resharder reads is a sorted `.npy` of uids as a structured `np.dtype("u8,u8")`
array: (first 16 hex digits, last 16 hex digits) as unsigned 64-bit integers (`submission_array`).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from canvas.core.errors import CanvasError
from canvas.curation.embedded_shards import check_embedding_pair, npy_shape, records_with_embeddings
from canvas.curation.records import DECODE, RawRecord, Record, Rejection
from canvas.curation.sources import IMAGE_COLUMNS

EMBEDDINGS = ("b32", "l14")  # the CLIP models DataComp ships: ViT-B/32 and ViT-L/14
CLIP_MODEL_OF = {"b32": "ViT-B-32", "l14": "ViT-L-14"}  # the open_clip name whose score rule applies
UID_DTYPE = np.dtype("u8,u8")
_UID = re.compile(r"[0-9a-fA-F]{32}")
POOL_COLUMNS = ("uid", "text")


def is_pool(schema_names: list[str]) -> bool:
    """A metadata-only pool shard: `uid` and `text`, no image column."""
    return all(c in schema_names for c in POOL_COLUMNS) and not any(c in schema_names for c in IMAGE_COLUMNS)


def embeddings_path(parquet_path: str) -> str:
    return parquet_path[: -len(".parquet")] + ".npz"


def npz_shapes(handle: BinaryIO) -> dict[str, tuple[int, ...]]:
    """Array shapes of an `.npz` from the headers alone (nothing is loaded)."""
    with zipfile.ZipFile(handle) as archive:
        return {name.removesuffix(".npy"): npy_shape(archive.open(name)) for name in archive.namelist()}


def check_pool_shard(path: str, rows: int, shapes: dict[str, tuple[int, ...]], which: str) -> int:
    """The embedding width, or a one-line error when the `.npz` does not fit the Parquet shard."""
    npz = embeddings_path(path)
    for key in (f"{which}_img", f"{which}_txt"):
        if key not in shapes:
            raise CanvasError(f"{npz}: no `{key}` array (has {', '.join(sorted(shapes)) or 'none'})")
    return check_embedding_pair(
        path,
        rows,
        (f"{npz}: `{which}_img`", shapes[f"{which}_img"]),
        (f"{npz}: `{which}_txt`", shapes[f"{which}_txt"]),
    )


def read_pool_shard(
    parquet: BinaryIO, npz: BinaryIO, path: str, index: int, which: str
) -> Iterator[RawRecord]:
    """One shard -> RawRecords without images, carrying the chosen model's image and text embeddings."""
    with np.load(npz) as arrays:
        img, txt = arrays[f"{which}_img"], arrays[f"{which}_txt"]
    yield from records_with_embeddings(parquet, ("uid",), "text", img, txt, path, index)


def metadata_record(
    raw: RawRecord, require_uid: bool = True, keep_embedding: bool = True
) -> Record | Rejection:
    """A pool row as a Record (no pixels: size = the original size), or why it cannot be curated.
    `require_uid`: the key must be a DataComp uid (clip-retrieval rows without one are named by their key).
    `keep_embedding=False`: the record goes on without its image embedding, which later stages read again
    from the pool's files by `ordinal` (`embedding_rows.EmbeddingRows`)."""

    def reject(why: str) -> Rejection:
        return Rejection(key=raw.key, stage=DECODE, reason=why, source=raw.source)

    if not raw.key:
        return reject("no key (uid, key or image_path)")
    if require_uid and not _UID.fullmatch(raw.key):
        return reject(f"uid {raw.key!r} is not 32 hex digits (DataComp's uid)")
    # in float32: a float16 dot product would move the score by up to ~5e-5
    img, txt = np.asarray(raw.embedding, np.float32), np.asarray(raw.text_embedding, np.float32)
    norms = (float(np.linalg.norm(img)), float(np.linalg.norm(txt)))
    if not all(np.isfinite(norms)) or min(norms) == 0.0:
        return reject("precomputed embedding is zero or not finite")
    img, txt = img / norms[0], txt / norms[1]
    w, h = raw.original_width or 0, raw.original_height or 0
    return Record(
        key=raw.key.lower() if _UID.fullmatch(raw.key) else raw.key,  # hex: one uid, one spelling
        caption=raw.caption,
        image=b"",
        source=raw.source,
        ordinal=raw.ordinal,
        width=w,
        height=h,
        sha256="",
        pixel_sha256="",
        phash=0,
        original_width=raw.original_width,
        original_height=raw.original_height,
        clip_score=float(np.dot(img, txt)),
        # float16 as shipped (lossless, half the bytes; `unit_embedding` normalises it as above), else unit
        embedding=None if not keep_embedding else raw.embedding if raw.embedding.dtype == np.float16 else img,
    )


def uid_pair(uid: str) -> tuple[int, int]:
    return int(uid[:16], 16), int(uid[16:32], 16)


def submission_array(uids: list[str]) -> np.ndarray:
    """Kept uids -> the sorted structured array DataComp's resharder reads (`np.save` it as `.npy`), each uid
    once: the resharder writes a sample per entry, and a run without exact dedup can keep a uid twice."""
    return np.unique(np.array([uid_pair(u) for u in uids], dtype=UID_DTYPE))
