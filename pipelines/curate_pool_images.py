"""A DataComp pool with its downloaded images: the metadata shards (Parquet + `.npz` embeddings) joined to
the WebDataset samples by uid, so the image stages run on the pixels and the CLIP stages on the pool's
own embeddings (nobody re-embeds a pool).

DataComp's `download_upstream.py` keeps the two apart: `metadata/*.parquet` + `*.npz` (one row per pool
sample), and `shards/*.tar` from img2dataset (`KEY.jpg`, `KEY.txt`, `KEY.json` whose `uid` names the pool
row; failed downloads have no sample). The join is a CoGroupByKey on the uid (distributed, no worker holds
the pool). A record is a pool row: matched with its image, or rejected at decode with the reason
(not downloaded; its uid repeated in the metadata). A sample whose uid has no pool row, or whose sidecar
names none, is a record too, rejected with why. So records in = pool rows + samples without a row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from canvas.curation.records import RawRecord

_POOL, _IMAGE = "pool_row", "image"


def _is_pool_row(raw: RawRecord) -> bool:
    return raw.image is None and raw.embedding is not None


def _image_key(raw: RawRecord) -> tuple[str, RawRecord]:
    return (raw.uid or "").lower(), raw


def _joined(row: RawRecord, image: RawRecord) -> RawRecord:
    """The sample's pixels with its pool row's uid, caption (what the text embedding was made from),
    embeddings and original size; where it sits is the sample's."""
    return dataclasses.replace(
        image,
        key=row.key,
        caption=row.caption,
        embedding=row.embedding,
        text_embedding=row.text_embedding,
        original_width=row.original_width or image.original_width,
        original_height=row.original_height or image.original_height,
    )


def _join(element: tuple[str, dict[str, Iterable[RawRecord]]]) -> Iterator[RawRecord]:
    uid, found = element
    rows = sorted(found[_POOL], key=lambda r: r.ordinal)
    images = sorted(found[_IMAGE], key=lambda r: r.ordinal)
    if not rows:
        Metrics.counter("curate", "pool_images_without_row").inc(len(images))
        for image in images:
            yield dataclasses.replace(image, error=f"uid {image.uid} has no row in the pool's metadata")
        return
    row, *repeated = rows
    for again in repeated:
        yield dataclasses.replace(
            again, error=f"uid {uid} repeated in the pool's metadata (first at {row.source})"
        )
    if not images:
        Metrics.counter("curate", "pool_rows_not_downloaded").inc()
        yield dataclasses.replace(row, error="not downloaded: no image sample with this uid in the shards")
        return
    for image in images:  # a sample downloaded twice: both go on, and exact dedup keeps one
        yield _joined(row, image)


class JoinPoolImages(beam.PTransform):
    """Pool rows and image samples (RawRecords, as read) -> one RawRecord per pool row and per sample without
    one; a sample joined to its row carries both (see the module docstring)."""

    def expand(self, raw: beam.PCollection) -> beam.PCollection:
        parts = raw | "PoolOrImage" >> beam.Partition(
            lambda r, _: 0 if _is_pool_row(r) else 1 if r.uid else 2, 3
        )
        rows = parts[0] | "RowsByUid" >> beam.Map(lambda r: (r.key.lower(), r))
        images = parts[1] | "ImagesByUid" >> beam.Map(_image_key)
        # Damaged samples and samples whose sidecar names no uid cannot be joined: they go on alone.
        unnamed = parts[2] | "NoUid" >> beam.Map(
            lambda r: (
                r if r.error else dataclasses.replace(r, error="its .json sidecar names no DataComp uid")
            )
        )
        joined = (
            {_POOL: rows, _IMAGE: images} | "JoinByUid" >> beam.CoGroupByKey() | "Join" >> beam.FlatMap(_join)
        )
        return (joined, unnamed) | "WithUnnamed" >> beam.Flatten()
