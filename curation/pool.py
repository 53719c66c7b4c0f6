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
import pyarrow.parquet as pq

from canvas.core.errors import CanvasError
from canvas.curation.records import DECODE, RawRecord, Record, Rejection
from canvas.curation.sources import IMAGE_COLUMNS, original_size

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
    shapes = {}
    with zipfile.ZipFile(handle) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                version = np.lib.format.read_magic(member)
                shape, _, _ = np.lib.format._read_array_header(member, version)  # noqa: SLF001
                shapes[name.removesuffix(".npy")] = shape
    return shapes


def check_pool_shard(path: str, rows: int, shapes: dict[str, tuple[int, ...]], which: str) -> int:
    """The embedding width, or a one-line error when the `.npz` does not fit the Parquet shard."""
    npz = embeddings_path(path)
    for part in ("img", "txt"):
        key = f"{which}_{part}"
        if key not in shapes:
            raise CanvasError(f"{npz}: no `{key}` array (has {', '.join(sorted(shapes)) or 'none'})")
        if len(shapes[key]) != 2 or shapes[key][0] != rows:
            raise CanvasError(f"{npz}: `{key}` has shape {shapes[key]}, expected ({rows}, dim) for {path}")
    if shapes[f"{which}_img"][1] != shapes[f"{which}_txt"][1]:
        raise CanvasError(f"{npz}: `{which}_img` and `{which}_txt` differ in width")
    return int(shapes[f"{which}_img"][1])


def read_pool_shard(
    parquet: BinaryIO, npz: BinaryIO, path: str, index: int, which: str
) -> Iterator[RawRecord]:
    """One shard -> RawRecords without images, carrying the chosen model's image and text embeddings."""
    meta = pq.ParquetFile(parquet)
    wanted = ("uid", "text", "original_width", "original_height")
    table = meta.read(columns=[c for c in wanted if c in meta.schema_arrow.names])  # not url etc.
    with np.load(npz) as arrays:
        img = np.asarray(arrays[f"{which}_img"], dtype=np.float32)
        txt = np.asarray(arrays[f"{which}_txt"], dtype=np.float32)
    if len(img) != table.num_rows or len(txt) != table.num_rows:
        raise CanvasError(
            f"{embeddings_path(path)}: {len(img)} embedding rows for {table.num_rows} Parquet rows"
        )
    missing = [None] * table.num_rows
    column = {c: table.column(c).to_pylist() if c in table.column_names else missing for c in wanted}
    for row in range(table.num_rows):
        size = original_size(column["original_width"][row], column["original_height"][row])
        yield RawRecord(
            key=str(column["uid"][row]),
            caption=column["text"][row],
            image=None,
            source=f"{path}#{row}",
            ordinal=(index, row),
            embedding=img[row],
            text_embedding=txt[row],
            **size,
        )


def metadata_record(raw: RawRecord, require_uid: bool = True) -> Record | Rejection:
    """A pool row as a Record (no pixels: size = the original size), or why it cannot be curated.
    `require_uid`: the key must be a DataComp uid (clip-retrieval rows without one are named by their key)."""

    def reject(why: str) -> Rejection:
        return Rejection(key=raw.key, stage=DECODE, reason=why, source=raw.source)

    if not raw.key:
        return reject("no key (uid, key or image_path)")
    if require_uid and not _UID.fullmatch(raw.key):
        return reject(f"uid {raw.key!r} is not 32 hex digits (DataComp's uid)")
    img, txt = raw.embedding, raw.text_embedding
    norms = (float(np.linalg.norm(img)), float(np.linalg.norm(txt)))
    if not all(np.isfinite(norms)) or min(norms) == 0.0:
        return reject("precomputed embedding is zero or not finite")
    img, txt = img / norms[0], txt / norms[1]
    w, h = raw.original_width or 0, raw.original_height or 0
    return Record(
        key=raw.key,
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
        embedding=img.astype(np.float32),
        text_embedding=txt.astype(np.float32),
    )


def uid_pair(uid: str) -> tuple[int, int]:
    return int(uid[:16], 16), int(uid[16:32], 16)


def submission_array(uids: list[str]) -> np.ndarray:
    """Kept uids -> the sorted structured array DataComp's resharder reads (`np.save` it as `.npy`)."""
    out = np.array([uid_pair(u) for u in uids], dtype=UID_DTYPE)
    out.sort()
    return out
