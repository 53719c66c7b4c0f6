"""Input formats: Parquet (`key`, `caption`, `image`), img2dataset Parquet (bytes in `jpg`), and
WebDataset `.tar` shards (`KEY.jpg|png|webp` + `KEY.txt` + optional `KEY.json`).

Readers take a binary file object, so the pipeline can hand them Beam's `FileSystems.open` (local, GCS,
S3, HDFS) while tests use plain files.

A corrupt or truncated file does not stop the run: the rows read before the damage are yielded as usual,
and the unreadable rest becomes one `RawRecord` with `error` set, which the decode stage rejects with that
reason (so records in = kept + rejected still holds, and the loss is in the ledger). A read of the file
that fails (network, disk) is not damage: it raises, so the runner retries the work item.
"""

from __future__ import annotations

import json
import tarfile
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from canvas.core.errors import CanvasError
from canvas.curation.records import RawRecord

IMAGE_COLUMNS = ("image", "jpg", "png", "webp")  # first present wins; img2dataset writes `jpg`
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
ORIGINAL_SIZE_COLUMNS = ("original_width", "original_height")  # img2dataset/DataComp metadata
BATCH_ROWS = 256
# What a damaged tar (plain or compressed) raises; anything else is a bug and must surface.
TAR_READ_ERRORS = (tarfile.ReadError, EOFError, OSError, zlib.error)


def is_tar(path: str) -> bool:
    return path.endswith((".tar", ".tar.gz", ".tgz"))


def parquet_columns(schema_names: list[str], path: str, schema: Any = None) -> tuple[str, str | None, str]:
    """(key column, caption column or None, image column) of a Parquet file, or a clear error.

    With the file's `pyarrow.Schema`, the image column must also hold bytes and the caption text: a
    column of another type (ints, say) is a mistake in the whole file, not in one record.
    """
    if "key" not in schema_names:
        raise CanvasError(f"{path}: Parquet input needs a `key` column; it has {', '.join(schema_names)}")
    image = next((c for c in IMAGE_COLUMNS if c in schema_names), None)
    if image is None:
        raise CanvasError(
            f"{path}: Parquet input needs an image column ({' or '.join(IMAGE_COLUMNS)}); "
            f"it has {', '.join(schema_names)}"
        )
    caption = "caption" if "caption" in schema_names else None
    if schema is not None:
        import pyarrow as pa

        t = pa.types
        allowed = {  # an all-null column is fine: each row is rejected as null
            image: ("bytes (binary)", (t.is_binary, t.is_large_binary, t.is_fixed_size_binary, t.is_null)),
            caption: ("text (string)", (t.is_string, t.is_large_string, t.is_null)),
        }
        for column, (wanted, accepts) in allowed.items():
            kind = schema.field(column).type if column else None
            kind = kind.value_type if kind is not None and t.is_dictionary(kind) else kind
            if kind is not None and not any(accept(kind) for accept in accepts):
                raise CanvasError(f"{path}: Parquet column `{column}` must hold {wanted}; it holds {kind}")
    return "key", caption, image


def original_size(width: Any, height: Any) -> dict[str, int | None]:
    """`original_width/height` as RawRecord fields: both positive whole numbers, or neither (a missing
    or nonsensical value means the decoded size is all there is to go by)."""

    def whole(v: Any) -> int | None:
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v or v < 1 or v != int(v):
            return None
        return int(v)

    w, h = whole(width), whole(height)
    if w is None or h is None:
        return {"original_width": None, "original_height": None}
    return {"original_width": w, "original_height": h}


def _one_line(exc: BaseException) -> str:
    """An exception as one printable line (Arrow's messages carry newlines and raw header bytes)."""
    text = "".join(c if c.isprintable() else " " for c in str(exc))
    return " ".join(text.split()) or type(exc).__name__


def unreadable(path: str, file_index: int, done: int, unit: str, whole: str, problem: str) -> RawRecord:
    """The record standing for the unreadable rest of `path`, after `done` complete `unit`s.

    Its key is a bracketed description, like the `<null key at ...>` stand-in, not a sample name; its
    source and ordinal take the next row number, so it is unique and sorts after the rows that were read.
    """
    return RawRecord(
        key=f"<unreadable: {path} after {done} {unit}>",
        caption=None,
        image=None,
        source=f"{path}#{done}",
        ordinal=(file_index, done),
        error=(
            f"unreadable input: {path}: {problem} after {done} complete {unit}; "
            f"the rest of the {whole} is lost"
        ),
    )


def read_parquet(fileobj: BinaryIO, path: str, file_index: int) -> Iterator[RawRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = 0
    try:
        pf = pq.ParquetFile(fileobj)
        try:
            key_col, caption_col, image_col = parquet_columns(pf.schema_arrow.names, path, pf.schema_arrow)
        except CanvasError as exc:  # local inputs are checked before the run; a remote one meets it here
            problem = f"{exc}".removeprefix(f"{path}: ") + f" ({pf.metadata.num_rows} rows not read)"
            yield unreadable(path, file_index, 0, "rows", "file", problem)
            return
        # img2dataset and DataComp shards carry the size before their download-time resize.
        size_cols = [c for c in ORIGINAL_SIZE_COLUMNS if c in pf.schema_arrow.names]
        columns = [c for c in (key_col, caption_col, image_col) if c] + size_cols
        # Single-threaded, so where damage stops the read depends on the bytes alone (determinism).
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns, use_threads=False):
            data = batch.to_pydict()
            captions = data[caption_col] if caption_col else [None] * batch.num_rows
            widths, heights = (data.get(c, [None] * batch.num_rows) for c in ORIGINAL_SIZE_COLUMNS)
            rows = zip(data[key_col], captions, data[image_col], widths, heights, strict=True)
            for key, caption, image, width, height in rows:
                yield RawRecord(
                    key=str(key) if key is not None else f"<null key at {path}#{row}>",
                    caption=caption,
                    image=image,
                    source=f"{path}#{row}",
                    ordinal=(file_index, row),
                    **original_size(width, height),
                )
                row += 1
    except (pa.ArrowInvalid, OSError) as exc:  # a batch is yielded whole or not at all
        yield unreadable(path, file_index, row, "rows", "file", f"corrupt Parquet ({_one_line(exc)})")


def _split_name(name: str) -> tuple[str, str]:
    """WebDataset's rule: the key is the path up to the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile quietly ends an archive at a missing, cut or garbled header, which would drop the tail of
    a shard cut at a member boundary without a word. Here only the zero block that tar writes at the end
    ends it; any other bad header is a ReadError."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            raise
        except tarfile.EmptyHeaderError:
            raise tarfile.ReadError("unexpected end of data: no end-of-archive marker") from None
        except (tarfile.TruncatedHeaderError, tarfile.InvalidHeaderError) as exc:
            raise tarfile.ReadError(str(exc)) from None


def _tar_problem(exc: BaseException) -> str:
    text = _one_line(exc)
    cut = isinstance(exc, EOFError) or "end of data" in text or "truncated" in text
    return f"{'truncated' if cut else 'corrupt'} tar ({text})"


def _caption(fields: dict[str, bytes], sample: str) -> tuple[str | None, str | None, dict]:
    """(caption, problem, RawRecord fields): `.txt` wins, else a `.json` sidecar's `caption`; a sidecar
    that cannot be what it claims (not UTF-8, not JSON, a non-string caption) is a problem, never a silent
    None. The sidecar's `original_width/height` (img2dataset writes them) and DataComp `uid` come along."""
    caption, size = None, original_size(None, None)
    if "txt" in fields:
        try:
            caption = fields["txt"].decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"{sample}.txt is not UTF-8 text ({exc.reason} at byte {exc.start})", size
    if "json" in fields:  # checked even when `.txt` wins: a broken sidecar means a damaged sample
        try:
            meta = json.loads(fields["json"])
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError; deep nesting
            return None, f"{sample}.json is not valid JSON ({_one_line(exc)[:200]})", size
        meta = meta if isinstance(meta, dict) else {}
        found = meta.get("caption")
        if found is not None and not isinstance(found, str):
            return None, f"{sample}.json: `caption` is not a string ({type(found).__name__})", size
        caption = caption if "txt" in fields else found
        size = original_size(*(meta.get(c) for c in ORIGINAL_SIZE_COLUMNS))
        uid = meta.get("uid")  # DataComp's downloads name the pool row of each sample
        size["uid"] = uid if isinstance(uid, str) else None
    return caption, None, size


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Why a member is not read: links and special files are never followed (nor extracted)."""
    if member.isfile():
        return None
    if member.issym():
        return f"tar member {member.name} is a symbolic link (links are not followed)"
    if member.islnk():
        return f"tar member {member.name} is a hard link (links are not followed)"
    return f"tar member {member.name} is not a regular file"


def read_webdataset(fileobj: BinaryIO, path: str, file_index: int) -> Iterator[RawRecord]:
    """Stream a tar shard; files of one sample are consecutive, as WebDataset writes them.

    A sample's key is its member path up to the first dot of the file name, folders included (as
    webdataset's `__key__`), so `d1/img.jpg` and `d2/img.jpg` are two samples. A sample with a link or
    special member, a repeated file, or a broken sidecar is yielded with `error` set (decode rejects it).
    On damage, a sample whose files were only partly read is part of the lost rest, never yielded.
    """
    current: str | None = None
    fields: dict[str, bytes] = {}
    problems: list[str] = []
    row = 0

    def emit() -> RawRecord:
        image = next((fields[s] for s in IMAGE_SUFFIXES if s in fields), None)
        caption, problem, size = _caption(fields, current or "")
        if problem is not None:
            problems.append(problem)
        return RawRecord(
            key=current or "",
            caption=None if problems else caption,
            image=image,
            source=f"{path}#{row}",
            ordinal=(file_index, row),
            error=f"bad WebDataset sample: {'; '.join(problems)}" if problems else None,
            **size,
        )

    try:
        with tarfile.open(fileobj=fileobj, mode="r|*", tarinfo=_StrictTarInfo) as tar:
            for member in tar:
                if member.isdir():  # folder entries are tar structure, not sample files
                    continue
                sample, ext = _split_name(member.name)
                if sample != current and current is not None:
                    yield emit()
                    row += 1
                    fields, problems = {}, []
                current = sample
                problem = _member_problem(member)
                if problem is None and ext in fields:
                    problem = f"{member.name} appears twice in the sample"
                if problem is not None:
                    problems.append(problem)
                    continue
                handle = tar.extractfile(member)
                fields[ext] = handle.read() if handle else b""
    except TAR_READ_ERRORS as exc:
        yield unreadable(path, file_index, row, "samples", "shard", _tar_problem(exc))
        return
    if current is not None:
        yield emit()


class _WatchedReads:
    """The input file, remembering whether a read itself failed.

    A failed read (network, disk) says nothing about the data and may pass on a retry, so it must fail
    the work item and let the runner retry it; only damage in bytes that were read is a rejection. The
    readers' error handlers cannot tell the two apart from the exception (pyarrow wraps both as
    OSError), so they ask this wrapper.
    """

    def __init__(self, fileobj: BinaryIO) -> None:
        self._fileobj = fileobj
        self.failure: BaseException | None = None

    def _watch(self, name: str, *args: object) -> object:
        try:
            return getattr(self._fileobj, name)(*args)
        except Exception as exc:
            self.failure = exc
            raise

    def read(self, *args: object) -> bytes:
        return self._watch("read", *args)  # type: ignore[return-value]

    def readinto(self, *args: object) -> int:
        return self._watch("readinto", *args)  # type: ignore[return-value]

    def seek(self, *args: object) -> int:
        return self._watch("seek", *args)  # type: ignore[return-value]

    def __getattr__(self, name: str) -> object:  # tell, closed, seekable, ... as the file has them
        return getattr(self._fileobj, name)


def read_file(fileobj: BinaryIO, path: str, file_index: int) -> Iterator[RawRecord]:
    """The records of one input file (format from its name); see the module docstring for damage."""
    reader = read_webdataset if is_tar(path) else read_parquet
    watched = _WatchedReads(fileobj)
    for record in reader(watched, path, file_index):  # type: ignore[arg-type]
        if record.error is not None and watched.failure is not None:
            raise watched.failure  # an I/O failure, not damage: let the runner retry the file
        yield record
