"""A pool's embedding rows read again from its own files, by (file, row), instead of carried by every record.

At pool scale the float16 image embedding is ~1,024 of a record's ~1,300 pickled bytes, and every stage
that reads a whole-pool collection as one bundle holds it (the in-process runner copies such a collection
on the way: docs/benchmarks.md, issue 20). A pool's rows are already on disk, aligned with the metadata, and
a record knows its place (`Record.ordinal` = (file index, row)). So where the files allow it, records travel
without the embedding and the stages that need it (SemDeDup, the curated writer) read it here: one
`os.pread` per run of consecutive rows, never the whole array, so memory holds only the rows asked for (and
the kernel's page cache, which is not the process's).

It needs every file local (a path the workers open; the shards themselves are read the same way) and each
array stored uncompressed (`np.save`, `np.savez`; not `np.savez_compressed`), C-ordered, float16 or float32.
`EmbeddingRows.of_files` returns None where that does not hold (`pipelines/curate_inputs.py: pool_rows`
then lets the records carry their embeddings). A file is read only while it is the file the run started
with (same inode, size and modification time): a pool rewritten during a run, or between two runs in one
process, is an error, not other rows.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_LOCAL_HEADER = 30  # a zip member's fixed local header; its name and extra field follow
_FDS: dict[tuple, int] = {}  # per process and file version: open for the process's life (read-only)


@dataclass(frozen=True)
class RowFile:
    """Where one file's rows are: the array's first byte, its dtype and shape, and the file's identity
    (inode, size, modification time in ns) when it was looked at."""

    path: str
    offset: int
    dtype: str
    rows: int
    dim: int
    stamp: tuple[int, int, int]


def _array_at(handle, start: int) -> tuple[int, np.dtype, tuple[int, ...], bool]:  # noqa: ANN001
    handle.seek(start)
    version = np.lib.format.read_magic(handle)
    shape, fortran, dtype = np.lib.format._read_array_header(handle, version)  # noqa: SLF001
    return handle.tell(), dtype, tuple(shape), bool(fortran)


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _row_file(
    path: str, offset: int, dtype: np.dtype, shape: tuple[int, ...], fortran: bool
) -> RowFile | None:
    if fortran or len(shape) != 2 or dtype.str not in ("<f2", "<f4"):
        return None
    return RowFile(path, offset, dtype.str, int(shape[0]), int(shape[1]), _stamp(os.stat(path)))


def npy_rows(path: str) -> RowFile | None:
    """An `.npy` file's rows (clip-retrieval's `img_emb_N.npy`), or None if they cannot be read in place."""
    with open(path, "rb") as handle:
        return _row_file(path, *_array_at(handle, 0))


def npz_rows(path: str, member: str) -> RowFile | None:
    """One array of an `.npz` (DataComp's `b32_img`), or None when it is compressed or not row-readable."""
    with open(path, "rb") as handle:
        with zipfile.ZipFile(handle) as archive:
            info = archive.getinfo(f"{member}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        handle.seek(info.header_offset)
        header = handle.read(_LOCAL_HEADER)
        if header[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        return _row_file(path, *_array_at(handle, info.header_offset + _LOCAL_HEADER + name_len + extra_len))


def _fd(spec: RowFile) -> int:
    key = (spec.path, spec.stamp)
    fd = _FDS.get(key)
    if fd is None:
        fd = os.open(spec.path, os.O_RDONLY)
        if _stamp(os.fstat(fd)) != spec.stamp:
            os.close(fd)
            raise OSError(f"{spec.path} changed since the run looked at it: its rows may be others now")
        _FDS[key] = fd
    return fd


@dataclass(frozen=True)
class EmbeddingRows:
    """The image-embedding files of a pool, by input file index (the `ordinal[0]` of its records)."""

    files: tuple[RowFile, ...]

    @property
    def dim(self) -> int:
        return self.files[0].dim

    def unit(self, ordinals: Sequence[tuple[int, int]]) -> np.ndarray:
        """(n, dim) float32 rows for (file index, row) pairs, each scaled to unit norm exactly as a record
        carrying it would be (`records.unit_embedding` of the float16 row; the float32 row over its norm,
        as `pool.metadata_record` stores it): the same bits either way."""
        out = np.empty((len(ordinals), self.dim), dtype=np.float32)
        if not len(ordinals):
            return out
        where = np.asarray(ordinals, dtype=np.int64).reshape(-1, 2)
        order = np.lexsort((where[:, 1], where[:, 0]))
        ranked = where[order]
        # one pread per run of consecutive rows of one file
        breaks = np.flatnonzero((np.diff(ranked[:, 0]) != 0) | (np.diff(ranked[:, 1]) != 1)) + 1
        for start, stop in zip([0, *breaks.tolist()], [*breaks.tolist(), len(order)], strict=True):
            f, r = int(ranked[start, 0]), int(ranked[start, 1])
            spec = self.files[f]
            if r < 0 or r + stop - start > spec.rows:
                raise IndexError(f"{spec.path}: rows {r}..{r + stop - start - 1} of {spec.rows}")
            dtype = np.dtype(spec.dtype)
            row_bytes = spec.dim * dtype.itemsize
            data = os.pread(_fd(spec), row_bytes * (stop - start), spec.offset + r * row_bytes)
            if len(data) != row_bytes * (stop - start):
                raise OSError(f"{spec.path}: short read at row {r} (the file changed during the run?)")
            block = np.frombuffer(data, dtype=dtype).reshape(stop - start, spec.dim)
            for i, row in zip(order[start:stop].tolist(), block, strict=True):
                x = row.astype(np.float32)
                out[i] = x / float(np.linalg.norm(x))
        return out

    @classmethod
    def of_files(cls, files: Sequence[RowFile | None]) -> EmbeddingRows | None:
        """All files row-readable and of one width, else None."""
        if not files or any(f is None for f in files) or len({f.dim for f in files}) != 1:
            return None
        return cls(tuple(files))
