"""DataComp's submission file (`uids.npy`) without gathering the kept uids on one worker.

At DataComp's large scale (1.28B samples) the kept uids are tens of GB: a `ToList` of them was one
worker's memory. Instead each kept uid goes to a part by the range of its first 64 bits (uids are hashes,
so the ranges fill evenly), each part is sorted and written as raw `u8,u8` rows by its own worker, and
`merge_uid_parts` streams the parts, in range order, into one `.npy` after the run: the file is sorted
and each uid is in it once (equal uids share a part), and no process holds more than one part.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems

from canvas.curation.pool import UID_DTYPE, uid_pair
from canvas.curation.records import Record

UIDS_PER_PART = 1 << 22  # 64 MiB of uids: a part fits any worker, and 1.28B uids make ~300 files
_PART = "part-{:05d}-of-{:05d}-{}-uids.u8u8"  # the count in the name: merging needs no second read


def _uid_pair(record: Record) -> tuple[int, int]:
    return uid_pair(record.key)


def _part_of(pair: tuple[int, int], n_parts: int) -> tuple[int, tuple[int, int]]:
    return (pair[0] * n_parts) >> 64, pair  # the range of the first 64 bits: parts in uid order


def _write_part(element: tuple[int, Iterable[tuple[int, int]]], folder: str, n_parts: int) -> None:
    part, pairs = element
    rows = np.unique(np.array(list(pairs), dtype=UID_DTYPE))
    with FileSystems.create(f"{folder}/{_PART.format(part, n_parts, len(rows))}") as handle:
        handle.write(rows.tobytes())


class WriteUidParts(beam.PTransform):
    """Kept Records -> sorted parts of their uids in `folder` (read back with `merge_uid_parts`)."""

    def __init__(self, folder: str, uids_per_part: int = UIDS_PER_PART) -> None:
        super().__init__()
        self.folder = folder
        self.uids_per_part = uids_per_part

    def expand(self, kept: beam.PCollection) -> beam.PCollection:
        pairs = kept | "UidPairs" >> beam.Map(_uid_pair)
        n_parts = beam.pvalue.AsSingleton(
            pairs
            | "CountUids" >> beam.combiners.Count.Globally()
            | "Parts" >> beam.Map(lambda n, per: max(1, math.ceil(n / per)), per=self.uids_per_part)
        )
        return (
            pairs
            | "ToPart" >> beam.Map(_part_of, n_parts=n_parts)
            | "GroupParts" >> beam.GroupByKey()
            | "WritePart" >> beam.Map(_write_part, folder=self.folder, n_parts=n_parts)
        )


def merge_uid_parts(folder: str, path: str) -> int:
    """The parts in `folder`, in order, as one `.npy` at `path` (an empty array when there are none);
    returns the number of uids. Reads one part at a time."""
    try:  # not FileSystems.exists(folder): an object store has no folder objects
        found = FileSystems.match([f"{folder}/part-*"])[0].metadata_list
    except BeamIOError:  # no parts (nothing kept)
        found = []
    parts = sorted(m.path for m in found)
    n = sum(int(part.rsplit("-", 2)[-2]) for part in parts)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(UID_DTYPE), "fortran_order": False, "shape": (n,)}
    )
    with FileSystems.create(path) as out:
        out.write(header.getvalue())
        for part in parts:
            with FileSystems.open(part, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                out.write(handle.read())
    return n
