"""DataComp pool rows: read from Parquet + .npz, checked, turned into Records with the CLIP score."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from canvas.curation.pool import metadata_record, read_pool_shard
from canvas.curation.records import Record, Rejection, unit_embedding


def _shard(uids: list[str], img: np.ndarray, txt: np.ndarray, **cols: list) -> tuple[io.BytesIO, io.BytesIO]:
    meta, npz = io.BytesIO(), io.BytesIO()
    pq.write_table(pa.table({"uid": uids, "text": ["a photo of a red cat"] * len(uids), **cols}), meta)
    np.savez(npz, b32_img=img.astype(np.float16), b32_txt=txt.astype(np.float16))
    meta.seek(0)
    npz.seek(0)
    return meta, npz


def test_pool_rows_become_records_with_the_given_embeddings_or_a_reason() -> None:
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(4, 8)), rng.normal(size=(4, 8))
    img[3] = 0.0  # a zero embedding cannot be curated
    uids = ["0" * 31 + "1", "ABCDEF" + "0" * 26, "not-a-uid", "f" * 32]
    raws = list(read_pool_shard(*_shard(uids, img, txt), "pool/s.parquet", 0, "b32"))  # no size columns
    out = [metadata_record(r) for r in raws]
    assert isinstance(out[0], Record) and isinstance(out[1], Record)
    assert out[0].original_width is None and out[0].source == "pool/s.parquet#0"
    a, b = img[0] / np.linalg.norm(img[0]), txt[0] / np.linalg.norm(txt[0])
    assert abs(out[0].clip_score - float(a @ b)) < 1e-2  # float16 storage
    assert out[0].embedding.dtype == np.float16  # as shipped: lossless, half the bytes of float32
    assert np.array_equal(out[0].embedding, img[0].astype(np.float16))
    assert abs(float(np.linalg.norm(unit_embedding(out[0].embedding))) - 1.0) < 1e-6
    assert isinstance(out[2], Rejection) and "not 32 hex digits" in out[2].reason
    assert isinstance(out[3], Rejection) and "zero or not finite" in out[3].reason


def test_float16_pool_embeddings_are_scored_in_float32_and_the_caption_embedding_not_kept() -> None:
    # A float16 dot product would move scores by up to 5e-5 here (records near a threshold would land on the
    # wrong side); the caption embedding is used once, for the score, and must not ride along after it.
    rng = np.random.default_rng(1)
    img, txt = rng.normal(size=(16, 512)), rng.normal(size=(16, 512)) + 0.5
    uids = [f"{i:032x}" for i in range(16)]
    records = [metadata_record(r) for r in read_pool_shard(*_shard(uids, img, txt), "p.parquet", 0, "b32")]
    a = img.astype(np.float16).astype(np.float64)
    b = txt.astype(np.float16).astype(np.float64)
    exact = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    scores = np.array([r.clip_score for r in records])
    assert np.max(np.abs(scores - exact)) < 1e-6
    assert not any(hasattr(r, "text_embedding") for r in records)
