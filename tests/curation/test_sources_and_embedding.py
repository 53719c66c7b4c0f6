"""Input readers (img2dataset Parquet, WebDataset tar) and the trimmed CLIP text encoder."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from canvas.core.errors import CanvasError
from canvas.curation.decode import DecodeConfig, decode
from canvas.curation.records import DECODE, Rejection
from canvas.curation.sources import BATCH_ROWS, parquet_columns, read_file


def test_img2dataset_parquet_reads_the_jpg_column(tmp_path: Path) -> None:
    path = tmp_path / "00000.parquet"
    table = pa.table(
        {
            "url": ["http://a", "http://b"],
            "caption": ["first caption here", None],
            "key": ["000000000", "000000001"],
            "status": ["success", "failed_to_download"],
            "jpg": [b"\xff\xd8abc", None],
        }
    )
    pq.write_table(table, path)
    with open(path, "rb") as f:
        rows = list(read_file(f, str(path), 3))
    assert [(r.key, r.caption, r.image, r.ordinal) for r in rows] == [
        ("000000000", "first caption here", b"\xff\xd8abc", (3, 0)),
        ("000000001", None, None, (3, 1)),
    ]


def test_parquet_without_an_image_column_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"key": ["a", "b"], "text": ["b", "c"]}), path)
    with pytest.raises(CanvasError, match="needs an image column"):  # local: before the run starts
        parquet_columns(pq.read_schema(path).names, str(path))
    with open(path, "rb") as f:  # met inside a run (a remote file): the file is one recorded rejection
        (row,) = read_file(f, str(path), 0)
    assert row.error is not None and "needs an image column" in row.error and "(2 rows not read)" in row.error


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_webdataset_tar_groups_files_by_sample(tmp_path: Path) -> None:
    path = tmp_path / "shard-000.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "00/000001.jpg", b"JPG1")
        _add(tar, "00/000001.txt", b"a caption")
        _add(tar, "00/000001.json", b'{"caption": "ignored: txt wins"}')
        _add(tar, "00/000002.png", b"PNG2")
        _add(tar, "00/000002.json", b'{"caption": "from json"}')
        _add(tar, "00/000003.txt", b"text without an image")
    with open(path, "rb") as f:
        rows = list(read_file(f, str(path), 0))
    assert [(r.key, r.caption, r.image) for r in rows] == [
        ("00/000001", "a caption", b"JPG1"),
        ("00/000002", "from json", b"PNG2"),
        ("00/000003", "text without an image", None),
    ]
    assert [r.source for r in rows] == [f"{path}#0", f"{path}#1", f"{path}#2"]


def _four_sample_shard(path: Path, mode: str = "w") -> bytes:
    with tarfile.open(path, mode) as tar:
        for i in range(4):
            _add(tar, f"{i:06d}.jpg", bytes([i]) * 4000)  # compressible, so a cut .tar.gz is cut mid-shard
            _add(tar, f"{i:06d}.txt", f"caption {i}".encode())
    return path.read_bytes()


@pytest.mark.parametrize("name", ["shard.tar", "shard.tar.gz"])
def test_cut_shard_yields_complete_samples_then_one_unreadable_record(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    data = _four_sample_shard(path, "w:gz" if name.endswith(".gz") else "w")
    path.write_bytes(data[: len(data) * 2 // 3])
    with open(path, "rb") as f:
        rows = list(read_file(f, str(path), 5))
    *good, lost = rows
    assert [(r.key, r.caption, r.error) for r in good] == [
        (f"{i:06d}", f"caption {i}", None) for i in range(len(good))
    ]
    assert 1 <= len(good) < 4  # what was fully read survives; the sample cut in the middle does not
    n = len(good)
    assert (lost.key, lost.source, lost.ordinal, lost.image) == (
        f"<unreadable: {path} after {n} samples>",
        f"{path}#{n}",
        (5, n),
        None,
    )
    detail = "unexpected end of data" if name == "shard.tar" else "truncated header"  # where the cut fell
    assert lost.error == (
        f"unreadable input: {path}: truncated tar ({detail}) after {n} complete samples; "
        "the rest of the shard is lost"
    )


def test_shard_cut_at_a_member_boundary_is_not_taken_for_a_short_shard(tmp_path: Path) -> None:
    # tarfile itself ends quietly at a missing header; the second sample's files would vanish unseen
    path = tmp_path / "shard.tar"
    data = _four_sample_shard(path)
    second_sample = 2 * (512 + 4096) + 2 * (512 + 512)  # two samples: header + padded .jpg, .txt each
    path.write_bytes(data[:second_sample])
    with open(path, "rb") as f:
        rows = list(read_file(f, str(path), 0))
    assert [r.key for r in rows] == ["000000", f"<unreadable: {path} after 1 samples>"]
    assert "no end-of-archive marker" in rows[-1].error


def test_garbage_tar_is_one_unreadable_record_that_decode_rejects(tmp_path: Path) -> None:
    path = tmp_path / "junk.tar"
    path.write_bytes(b"garbage\n")
    with open(path, "rb") as f:
        (row,) = read_file(f, str(path), 0)
    assert (row.key, row.source) == (f"<unreadable: {path} after 0 samples>", f"{path}#0")
    rejection = decode(row, DecodeConfig())
    assert isinstance(rejection, Rejection)
    assert (rejection.key, rejection.stage, rejection.source) == (row.key, DECODE, row.source)
    assert rejection.reason == (
        f"unreadable input: {path}: truncated tar (truncated header) after 0 complete samples; "
        "the rest of the shard is lost"
    )


def test_corrupt_parquet_keeps_the_batches_read_and_records_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    n = 2 * BATCH_ROWS
    table = pa.table({"key": [f"k{i}" for i in range(n)], "image": [bytes([i % 256]) * 64 for i in range(n)]})
    pq.write_table(table, path, row_group_size=BATCH_ROWS, use_dictionary=False)
    data = bytearray(path.read_bytes())
    start = pq.ParquetFile(path).metadata.row_group(1).column(1).data_page_offset  # 2nd batch's images
    data[start : start + 16] = b"\xff" * 16  # a garbled page header
    path.write_bytes(bytes(data))
    with open(path, "rb") as f:
        rows = list(read_file(f, str(path), 1))
    assert [r.key for r in rows] == [f"k{i}" for i in range(BATCH_ROWS)] + [
        f"<unreadable: {path} after {BATCH_ROWS} rows>"
    ]
    assert rows[-1].source == f"{path}#{BATCH_ROWS}" and rows[-1].error.startswith(
        f"unreadable input: {path}: corrupt Parquet ("
    )
    assert rows[-1].error.endswith(f"after {BATCH_ROWS} complete rows; the rest of the file is lost")
    path.write_bytes(bytes(data[: len(data) // 2]))  # no footer: nothing is readable
    with open(path, "rb") as f:
        assert [r.key for r in read_file(f, str(path), 1)] == [f"<unreadable: {path} after 0 rows>"]


def test_trimmed_text_encoder_equals_open_clip(tiny_presets: dict) -> None:
    from canvas.core.presets.clip import create_clip
    from canvas.curation.embedding import encode_text_trimmed

    model, _, tokenizer = create_clip()
    tokens = tokenizer(["a cat", "a much longer caption about a temple roof among green trees", ""])
    with torch.no_grad():
        torch.testing.assert_close(
            encode_text_trimmed(model, tokens), model.encode_text(tokens), atol=1e-5, rtol=1e-4
        )


class _FlakyFile(io.BytesIO):
    """A file whose reads fail after `limit` bytes, as a dropped network connection would."""

    def __init__(self, data: bytes, limit: int) -> None:
        super().__init__(data)
        self.limit = limit

    def _check(self, size: int) -> None:
        whole = len(self.getbuffer())
        end = whole if size is None or size < 0 else min(self.tell() + size, whole)
        if end > self.limit:
            raise ConnectionResetError("connection reset by peer")

    def read(self, size: int | None = -1) -> bytes:
        self._check(size)
        return super().read(size)

    def readinto(self, buffer) -> int:  # noqa: ANN001 - a writable buffer
        self._check(len(buffer))
        return super().readinto(buffer)


@pytest.mark.parametrize("name", ["shard.tar", "x.parquet"])
def test_a_failing_read_fails_the_file_for_a_retry_not_a_rejection(tmp_path: Path, name: str) -> None:
    # Damage is recorded; a read that fails (network, disk) may pass on a retry, so it must not be
    # written off as lost data: the error reaches the runner, which retries the work item.
    path = tmp_path / name
    if name.endswith(".tar"):
        data = _four_sample_shard(path)
    else:
        n = 2 * BATCH_ROWS
        table = pa.table({"key": [f"k{i}" for i in range(n)], "image": [b"x" * 64] * n})
        pq.write_table(table, path, row_group_size=BATCH_ROWS)
        data = path.read_bytes()
    with pytest.raises(ConnectionResetError):
        list(read_file(_FlakyFile(data, len(data) // 2), str(path), 0))
    assert len(list(read_file(_FlakyFile(data, len(data)), str(path), 0))) == (
        4 if name.endswith(".tar") else n
    )
