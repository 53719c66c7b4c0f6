"""clip-retrieval shards: metadata Parquet + img_emb/text_emb .npy -> RawRecords with both embeddings."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from canvas.core.errors import CanvasError
from canvas.curation.clip_retrieval import embedding_paths, is_metadata_shard, npy_shape, read_shard
from canvas.curation.pool import metadata_record
from canvas.curation.records import Record, Rejection


def _npy(x: np.ndarray) -> io.BytesIO:
    buf = io.BytesIO()
    np.save(buf, x)
    buf.seek(0)
    return buf


def test_embedding_files_sit_beside_the_metadata_folder() -> None:
    path = "gs://b/run/metadata/metadata_007.parquet"
    assert is_metadata_shard(path) and not is_metadata_shard("gs://b/run/shard_0.parquet")
    assert embedding_paths(path) == (
        "gs://b/run/img_emb/img_emb_007.npy",
        "gs://b/run/text_emb/text_emb_007.npy",
    )
    assert npy_shape(_npy(np.zeros((3, 8), np.float16))) == (3, 8)
    with pytest.raises(CanvasError, match="not a clip-retrieval"):
        embedding_paths("run/meta/metadata_0.parquet")


def test_rows_are_named_by_key_without_a_uid_and_keep_the_float16_embeddings() -> None:
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(3, 8)), rng.normal(size=(3, 8))
    meta = io.BytesIO()
    table = {"image_path": ["a.jpg", "b.jpg", "c.jpg"], "caption": ["a red cat", "a dog", "x"]}
    pq.write_table(
        pa.table({**table, "key": ["000000001", None, "000000003"], "original_width": [640, 0, 5]}), meta
    )
    meta.seek(0)
    raws = list(
        read_shard(
            meta,
            _npy(img.astype(np.float16)),
            _npy(txt.astype(np.float16)),
            "r/metadata/metadata_0.parquet",
            0,
        )
    )
    assert [r.key for r in raws] == ["000000001", "", "000000003"]
    assert raws[0].source == "r/metadata/metadata_0.parquet#0" and raws[0].original_width is None  # no height
    out = [metadata_record(r, require_uid=False) for r in raws]
    assert isinstance(out[0], Record) and isinstance(out[1], Rejection) and "no key" in out[1].reason
    a, b = img[0] / np.linalg.norm(img[0]), txt[0] / np.linalg.norm(txt[0])
    assert abs(out[0].clip_score - float(a @ b)) < 1e-2
    assert isinstance(metadata_record(raws[0]), Rejection)  # a DataComp pool would need a uid
