"""Reading image-text shards and writing sorted, deterministic Parquet shards, through Beam's FileSystems
(so the same code reads and writes local paths, gs://, s3:// and hdfs://). The shards' schemas and naming
are the curated format's, `canvas.core.formats.curated`."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from canvas.core.errors import CanvasError
from canvas.core.formats.curated import REJECTED_SCHEMA, ROW_GROUP_ROWS, shard_name, shard_of
from canvas.curation import clip_retrieval
from canvas.curation.embedding_rows import EmbeddingRows
from canvas.curation.pool import embeddings_path, read_pool_shard
from canvas.curation.records import RawRecord, Record, Rejection, unit_embedding
from canvas.curation.sources import is_tar, read_file

__all__ = [
    "ReadImageText",
    "RecordRows",
    "WriteSortedParquet",
    "expand_inputs",
    "record_row",
    "rejection_row",
    "rejection_rows",
]


def record_row(r: Record, embedding: np.ndarray | None = None) -> dict:
    """A curated row; `embedding`: the unit embedding read for a record that travelled without it."""
    if embedding is None and r.embedding is not None:
        embedding = unit_embedding(r.embedding)
    return {
        "key": r.key,
        "caption": r.caption,
        "image": r.image,
        "width": r.width,
        "height": r.height,
        "sha256": r.sha256,
        "phash": r.phash_hex,
        "clip_score": r.clip_score,
        "nsfw_score": r.nsfw_score,
        "cluster_id": r.cluster_id,
        # a float32 array, not a list: a list of Python floats takes 16 KB per 512-d row while the rows
        # wait to be grouped into shards (pyarrow converts either the same way)
        "embedding": embedding,
        "source": r.source,
    }


class RecordRows:
    """A shard's records -> its curated rows, for the writer. With a pool's `rows`, the embeddings the
    records travelled without (`clip.precomputed_rows: reread`) are read again in one call for the shard:
    scattered rows cost ~12 us each that way against ~40 us in a call per record (100k-row file, 20k reads)."""

    def __init__(self, rows: EmbeddingRows | None = None) -> None:
        self.rows = rows

    def __call__(self, records: list[Record]) -> list[dict]:
        if self.rows is None:
            return [record_row(r) for r in records]
        missing = [i for i, r in enumerate(records) if r.embedding is None]
        read = dict(zip(missing, self.rows.unit([records[i].ordinal for i in missing]), strict=True))
        return [record_row(r, read.get(i)) for i, r in enumerate(records)]


def rejection_row(r: Rejection) -> dict:
    return {name: getattr(r, name) for name in REJECTED_SCHEMA.names}


def rejection_rows(rejections: list[Rejection]) -> list[dict]:
    return [rejection_row(r) for r in rejections]


def expand_inputs(patterns: list[str]) -> list[str]:
    """Paths and globs -> sorted file list (a folder means every .parquet/.tar in it); clear error if none."""
    files: list[str] = []
    for given in patterns:
        pattern = given if "://" in given else os.path.expanduser(given)  # `~` as in the output path
        path = pattern.rstrip("/")
        candidates = [pattern]
        if FileSystems.exists(path) and not any(
            pattern.endswith(s) for s in (".parquet", ".tar", ".tgz", ".gz")
        ):
            # clip-retrieval's output folder: its metadata shards, each naming its img_emb/text_emb files
            candidates = [f"{path}/*.parquet", f"{path}/*.tar", f"{path}/*.tar.gz", f"{path}/*.tgz"]
            candidates.append(f"{path}/metadata/metadata_*.parquet")
        found = []
        for candidate in candidates:
            with contextlib.suppress(Exception):  # FileSystems raises BeamIOError for a missing path
                found += [m.path for m in FileSystems.match([candidate])[0].metadata_list]
        if not found:
            raise CanvasError(f"input not found: {given}")
        files += found
    return sorted(set(files))


class _ReadShard(beam.DoFn):
    def __init__(self, precomputed: str | None = None) -> None:
        # a DataComp pool (SHARD.parquet + SHARD.npz) or clip-retrieval's folder: no images
        self.precomputed = precomputed

    def process(self, element: tuple[int, str]) -> Iterator[RawRecord]:
        index, path = element
        raw = CompressionTypes.UNCOMPRESSED
        if self.precomputed == "clip-retrieval":
            img, txt = clip_retrieval.embedding_paths(path)
            with (
                FileSystems.open(path, compression_type=raw) as meta,
                FileSystems.open(img, compression_type=raw) as img_npy,
                FileSystems.open(txt, compression_type=raw) as txt_npy,
            ):
                yield from clip_retrieval.read_shard(meta, img_npy, txt_npy, path, index)
            return
        if self.precomputed and not is_tar(path):  # a pool's tars: its downloaded images (curate_pool_images)
            with (
                FileSystems.open(path, compression_type=raw) as meta,
                FileSystems.open(embeddings_path(path), compression_type=raw) as npz,
            ):
                yield from read_pool_shard(meta, npz, path, index, self.precomputed)
            return
        # The raw bytes: tarfile decompresses .tar.gz itself, so damage inside the stream is a rejection
        # (read_file), while a failing read of the file is an I/O error the runner retries.
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            yield from read_file(handle, path, index)


class ReadImageText(beam.PTransform):
    """File paths -> `RawRecord`s. Shards are spread over workers; rows keep their (file, row) position."""

    def __init__(self, files: list[str], precomputed: str | None = None) -> None:
        super().__init__()
        self.files = files
        self.precomputed = precomputed

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Files" >> beam.Create(list(enumerate(self.files)))
            | "Spread" >> beam.Reshuffle()
            | "ReadShards" >> beam.ParDo(_ReadShard(self.precomputed))
        )


def _key_of(element: dict | Record | Rejection) -> str:
    return element["key"] if isinstance(element, dict) else element.key


class _WriteShard(beam.DoFn):
    """Writes one shard, rows sorted by (key, source), so equal input gives byte-equal files."""

    def __init__(
        self, folder: str, schema: pa.Schema, to_rows: Callable[[list], list[dict]] | None = None
    ) -> None:
        self.folder = folder
        self.schema = schema
        self.to_rows = to_rows

    def process(self, element: tuple[int, Iterable], n_shards: int) -> Iterator[str]:
        shard, elements = element
        rows = elements if self.to_rows is None else self.to_rows(list(elements))
        ordered = sorted(rows, key=lambda r: (r["key"], r["source"]))
        table = pa.Table.from_pylist(ordered, schema=self.schema)
        path = f"{self.folder}/{shard_name(shard, n_shards)}"
        with FileSystems.create(path) as handle:
            # small row groups: one key is found by reading ~ROW_GROUP_ROWS rows, not the whole shard
            pq.write_table(table, handle, row_group_size=ROW_GROUP_ROWS)
        yield path


class WriteSortedParquet(beam.PTransform):
    """Rows (dicts) -> `folder/part-NNNNN-of-MMMMM.parquet`, about `rows_per_shard` rows each.

    With `to_rows`, the elements are records (`Record`/`Rejection`) made into rows, a shard's at once, only
    when their shard is written: the records wait in the count and the grouping by shard as their compact
    pickles (a row dict pickles every column name and its arrays through numpy's own reduce, ~2x slower and
    larger)."""

    def __init__(
        self,
        folder: str,
        schema: pa.Schema,
        rows_per_shard: int,
        to_rows: Callable[[list], list[dict]] | None = None,
    ) -> None:
        super().__init__()
        self.folder = folder
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self.to_rows = to_rows

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        per_shard = self.rows_per_shard
        n_shards = (
            rows
            | "Count" >> beam.combiners.Count.Globally()
            | "Shards" >> beam.Map(lambda n: max(1, math.ceil(n / per_shard)))
        )
        shards = beam.pvalue.AsSingleton(n_shards)
        return (
            rows
            | "KeyByShard" >> beam.Map(lambda e, n: (shard_of(_key_of(e), n), e), n=shards)
            | "GroupShards" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteShard(self.folder, self.schema, self.to_rows), n_shards=shards)
        )
