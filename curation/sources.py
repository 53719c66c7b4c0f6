"""Input formats: Parquet (`key`, `caption`, `image`), img2dataset Parquet (bytes in `jpg`), and
WebDataset `.tar` shards (`KEY.jpg|png|webp` + `KEY.txt` + optional `KEY.json`).

Readers take a binary file object, so the pipeline can hand them Beam's `FileSystems.open` (local, GCS,
S3, HDFS) while tests use plain files.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from canvas.errors import CanvasError
from curation.records import RawRecord

IMAGE_COLUMNS = ("image", "jpg", "png", "webp")  # first present wins; img2dataset writes `jpg`
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
BATCH_ROWS = 256


def is_tar(path: str) -> bool:
    return path.endswith((".tar", ".tar.gz", ".tgz"))


def parquet_columns(schema_names: list[str], path: str) -> tuple[str, str | None, str]:
    """(key column, caption column or None, image column) of a Parquet file, or a clear error."""
    if "key" not in schema_names:
        raise CanvasError(f"{path}: Parquet input needs a `key` column; it has {', '.join(schema_names)}")
    image = next((c for c in IMAGE_COLUMNS if c in schema_names), None)
    if image is None:
        raise CanvasError(
            f"{path}: Parquet input needs an image column ({' or '.join(IMAGE_COLUMNS)}); "
            f"it has {', '.join(schema_names)}"
        )
    return "key", "caption" if "caption" in schema_names else None, image


def read_parquet(fileobj: BinaryIO, path: str, file_index: int) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(fileobj)
    key_col, caption_col, image_col = parquet_columns(pf.schema_arrow.names, path)
    columns = [c for c in (key_col, caption_col, image_col) if c]
    row = 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        data = batch.to_pydict()
        captions = data[caption_col] if caption_col else [None] * batch.num_rows
        for key, caption, image in zip(data[key_col], captions, data[image_col], strict=True):
            yield RawRecord(
                key=str(key) if key is not None else f"<null key at {path}#{row}>",
                caption=caption,
                image=image,
                source=f"{path}#{row}",
                ordinal=(file_index, row),
            )
            row += 1


def _split_name(name: str) -> tuple[str, str]:
    """WebDataset's rule: the key is the path up to the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def read_webdataset(fileobj: BinaryIO, path: str, file_index: int) -> Iterator[RawRecord]:
    """Stream a tar shard; files of one sample are consecutive, as WebDataset writes them."""
    current: str | None = None
    fields: dict[str, bytes] = {}
    row = 0

    def emit() -> RawRecord:
        image = next((fields[s] for s in IMAGE_SUFFIXES if s in fields), None)
        caption = fields["txt"].decode("utf-8", errors="replace") if "txt" in fields else None
        if caption is None and "json" in fields:
            try:
                meta = json.loads(fields["json"])
                caption = meta.get("caption") if isinstance(meta, dict) else None
            except ValueError:
                caption = None
        key = current.rsplit("/", 1)[-1] if current else ""
        return RawRecord(
            key=key, caption=caption, image=image, source=f"{path}#{row}", ordinal=(file_index, row)
        )

    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            sample, ext = _split_name(member.name)
            if sample != current and current is not None:
                yield emit()
                row += 1
                fields = {}
            current = sample
            handle = tar.extractfile(member)
            fields[ext] = handle.read() if handle else b""
    if current is not None:
        yield emit()


def read_file(fileobj: BinaryIO, path: str, file_index: int) -> Iterator[RawRecord]:
    reader = read_webdataset if is_tar(path) else read_parquet
    yield from reader(fileobj, path, file_index)
