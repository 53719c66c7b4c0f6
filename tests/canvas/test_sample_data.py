"""The sample set: real photos, planted problems, a truth manifest that matches the rows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from canvas.core.sample_data import PHOTOS, build_sample


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_sample_parquet_schema_and_truth(sample_parquet: Path) -> None:
    table = pq.read_table(sample_parquet)
    assert table.column_names == ["key", "caption", "image"]
    truth = json.loads(sample_parquet.with_suffix(".truth.json").read_text())
    assert len(truth) == table.num_rows
    keys = table.column("key").to_pylist()
    assert [t["key"] for t in truth] == keys
    kinds = {t["kind"] for t in truth}
    assert {
        "original",
        "exact_dup",
        "pixel_dup",
        "near_dup",
        "broken",
        "bad_caption",
        "bad_aspect",
        "dup_key",
    } <= kinds
    originals = [t for t in truth if t["kind"] == "original"]
    assert len(originals) == len(PHOTOS) and all(t["expect"] == "keep" for t in originals)


def test_originals_are_distinct_real_photos_of_datacomp_size() -> None:
    rows, truth = build_sample()
    seen = set()
    for row, t in zip(rows, truth, strict=True):
        if t.kind != "original":
            continue
        img = _decode(row["image"]).convert("RGB")
        assert min(img.size) >= 200 and max(img.size) / min(img.size) <= 3, t.key
        assert len(row["caption"].split()) > 2
        seen.add(img.tobytes())
    assert len(seen) == len(PHOTOS)


def test_planted_duplicates_copy_their_original() -> None:
    rows, truth = build_sample()
    by_key = {t.key: rows[t.row] for t in truth if t.kind == "original"}
    for row, t in zip(rows, truth, strict=True):
        if t.kind == "exact_dup":
            assert row["image"] == by_key[t.of]["image"]
        elif t.kind == "pixel_dup":
            assert row["image"] != by_key[t.of]["image"]
            assert (
                _decode(row["image"]).convert("RGB").tobytes()
                == _decode(by_key[t.of]["image"]).convert("RGB").tobytes()
            )
        elif t.kind == "near_dup":
            a, b = _decode(row["image"]).convert("RGB"), _decode(by_key[t.of]["image"]).convert("RGB")
            assert a.tobytes() != b.tobytes()


def test_broken_records_really_fail_to_decode() -> None:
    rows, truth = build_sample()
    for row, t in zip(rows, truth, strict=True):
        if t.kind != "broken":
            continue
        if not row["image"]:
            continue  # null / empty
        with pytest.raises((OSError, Image.DecompressionBombError, SyntaxError)):
            _decode(row["image"])


def test_odd_modes_are_present() -> None:
    rows, truth = build_sample()
    modes = {_decode(rows[t.row]["image"]).mode for t in truth if t.kind == "original"}
    assert {"CMYK", "P", "RGBA"} <= modes and modes & {"I;16", "I"}


def test_sample_is_deterministic(tmp_path: Path, sample_parquet: Path) -> None:
    from canvas.core.sample_data import write_sample

    write_sample(tmp_path / "again.parquet")
    assert pq.read_table(tmp_path / "again.parquet").equals(pq.read_table(sample_parquet))
