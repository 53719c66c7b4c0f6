"""Records cross every Beam shuffle pickled: they must come back equal, arrays included, and compact."""

from __future__ import annotations

import pickle

import numpy as np

from canvas.curation.best_copy import CopyQuality
from canvas.curation.records import RawRecord, Record, Rejection


def _record(embedding: np.ndarray | None) -> Record:
    return Record(
        key="0123456789abcdef0123456789abcdef",
        caption="a photo of a red cat",
        image=b"\xff\xd8jpeg",
        source="pool/shard_00001.parquet#12345",
        ordinal=(1, 12345),
        width=512,
        height=384,
        sha256="",
        pixel_sha256="",
        phash=2**63 + 5,
        crop_phashes=(1, 2),
        clip_score=0.31,
        embedding=embedding,
    )


def test_records_survive_pickling_with_their_arrays_dtype_and_shape() -> None:
    emb = np.random.default_rng(0).normal(size=512).astype(np.float32)
    for record in (_record(emb), _record(None)):
        back = pickle.loads(pickle.dumps(record))
        assert back == record and type(back) is Record
        assert (back.embedding is None) == (record.embedding is None)
        if record.embedding is not None:
            assert back.embedding.dtype == np.float32 and np.array_equal(back.embedding, emb)
    raw = RawRecord(
        key="k",
        caption=None,
        image=None,
        source="s#0",
        ordinal=(0, 0),
        embedding=np.arange(6, dtype=np.float16).reshape(2, 3),
        text_embedding=None,
    )
    back = pickle.loads(pickle.dumps(raw))
    assert back == raw and back.embedding.dtype == np.float16 and back.embedding.shape == (2, 3)
    assert back.text_embedding is None
    rejection = Rejection(
        key="k", stage="semantic_dedup", reason="why", source="s#0", duplicate_of="j", score=0.99
    )
    assert pickle.loads(pickle.dumps(rejection)) == rejection
    quality = CopyQuality("k", "s#0", 512, 384, "jpeg", 0.25, clip_score=0.3)
    assert pickle.loads(pickle.dumps(quality)) == quality


def test_a_pickled_record_is_its_embedding_bytes_plus_a_small_header() -> None:
    # The default pickling of a dataclass holding a numpy array took 2586 bytes for this record (2048 of
    # them the embedding): every grouping stage holds one such copy per record.
    emb = np.zeros(512, dtype=np.float32)
    assert len(pickle.dumps(_record(emb))) < 2048 + 300
