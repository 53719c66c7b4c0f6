"""WebDataset shards: keys keep their folder, and a bad member or sidecar is a recorded rejection."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from canvas.curation.decode import DecodeConfig, decode
from canvas.curation.records import Rejection
from canvas.curation.sources import read_file


def _add(tar: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _read(path: Path) -> list:
    with open(path, "rb") as f:
        return list(read_file(f, str(path), 0))


def test_samples_in_two_folders_with_one_name_are_two_records(tmp_path: Path) -> None:
    # webdataset's own `__key__` is the member path up to the first dot of the file name, folders included
    path = tmp_path / "shard-000.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "d1/img.jpg", b"JPG1")
        _add(tar, "d1/img.txt", b"first")
        _add(tar, "d2/img.jpg", b"JPG2")
        _add(tar, "d2/img.txt", b"second")
        _add(tar, "d.3/img.jpg", b"JPG3")  # a dot in the folder is not the extension's dot
    rows = _read(path)
    assert [(r.key, r.caption, r.image, r.error) for r in rows] == [
        ("d1/img", "first", b"JPG1", None),
        ("d2/img", "second", b"JPG2", None),
        ("d.3/img", None, b"JPG3", None),
    ]


def _rejected(rows: list) -> dict[str, str]:
    out = {}
    for row in rows:
        result = decode(row, DecodeConfig())
        assert isinstance(result, Rejection)  # none of the images here is a real picture
        out[row.key] = result.reason
    return out


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([("a.jpg", b"JPG"), ("a.txt", b"caf\xe9")], "a.txt is not UTF-8 text"),
        ([("a.jpg", b"JPG"), ("a.json", b"{not json")], "a.json is not valid JSON"),
        ([("a.jpg", b"JPG"), ("a.json", b"[" * 100_000)], "a.json is not valid JSON"),
        ([("a.jpg", b"JPG"), ("a.json", b'{"caption": 7}')], "a.json: `caption` is not a string"),
        ([("a.jpg", b"JPG"), ("a.txt", b"ok"), ("a.json", b"\xff")], "a.json is not valid JSON"),
        ([("a.jpg", b"JPG1"), ("a.jpg", b"JPG2")], "a.jpg appears twice"),
    ],
)
def test_a_bad_sidecar_rejects_its_sample_with_a_reason(
    tmp_path: Path, members: list[tuple[str, bytes]], reason: str
) -> None:
    path = tmp_path / "shard.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            _add(tar, name, data)
        _add(tar, "b.jpg", b"fine")
    rows = _read(path)
    assert [r.key for r in rows] == ["a", "b"]
    assert rows[1].error is None  # the next sample is untouched
    assert reason in _rejected(rows[:1])["a"]


def test_link_and_device_members_are_never_read_but_recorded(tmp_path: Path) -> None:
    path = tmp_path / "shard.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "dir", b"", tarfile.DIRTYPE)  # a folder entry is normal tar structure: no record
        _add(tar, "dir/a.jpg", b"", tarfile.SYMTYPE, "/etc/passwd")
        _add(tar, "dir/b.jpg", b"JPG")
        _add(tar, "dir/b.txt", b"", tarfile.LNKTYPE, "dir/b.jpg")
        _add(tar, "dir/c.jpg", b"", tarfile.FIFOTYPE)
    rows = _read(path)
    assert [r.key for r in rows] == ["dir/a", "dir/b", "dir/c"]
    assert all(r.image is None for r in rows[::2]) and rows[1].image == b"JPG"
    reasons = _rejected(rows)
    assert "dir/a.jpg is a symbolic link" in reasons["dir/a"]
    assert "dir/b.txt is a hard link" in reasons["dir/b"]
    assert "dir/c.jpg is not a regular file" in reasons["dir/c"]


def test_traversing_member_names_are_only_key_text_nothing_is_extracted(tmp_path: Path) -> None:
    shard_dir = tmp_path / "in"
    shard_dir.mkdir()
    path = shard_dir / "shard.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "../../evil.jpg", b"JPG1")
        _add(tar, "/abs/x.jpg", b"JPG2")
    rows = _read(path)
    assert [(r.key, r.image) for r in rows] == [("../../evil", b"JPG1"), ("/abs/x", b"JPG2")]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["in", "shard.tar"]  # bytes read in memory only
