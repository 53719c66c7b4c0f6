"""Input readers (img2dataset Parquet, WebDataset tar) and the trimmed CLIP text encoder."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from canvas.errors import CanvasError
from curation.sources import read_file


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
    pq.write_table(pa.table({"key": ["a"], "text": ["b"]}), path)
    with open(path, "rb") as f, pytest.raises(CanvasError, match="needs an image column"):
        list(read_file(f, str(path), 0))


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
        ("000001", "a caption", b"JPG1"),
        ("000002", "from json", b"PNG2"),
        ("000003", "text without an image", None),
    ]
    assert [r.source for r in rows] == [f"{path}#0", f"{path}#1", f"{path}#2"]


def test_trimmed_text_encoder_equals_open_clip(tiny_presets: dict) -> None:
    from canvas.presets import create_clip
    from curation.embedding import encode_text_trimmed

    model, _, tokenizer = create_clip()
    tokens = tokenizer(["a cat", "a much longer caption about a temple roof among green trees", ""])
    with torch.no_grad():
        torch.testing.assert_close(
            encode_text_trimmed(model, tokens), model.encode_text(tokens), atol=1e-5, rtol=1e-4
        )
