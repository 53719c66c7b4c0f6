"""Each curation stage as a Beam transform on the real DirectRunner (TestPipeline + assert_that)."""

from __future__ import annotations

import dataclasses
import io

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from canvas.curation.config import ClipScoreConfig
from canvas.curation.decode import DecodeConfig, decode
from canvas.curation.exact_dedup import ExactDedupConfig
from canvas.curation.filters import BasicFilterConfig
from canvas.curation.near_dedup import NearDedupConfig
from canvas.curation.records import RawRecord, Record, Rejection
from canvas.curation.semdedup import SemDedupConfig
from canvas.curation.semdedup.kmeans import nearest_centroids
from canvas.pipelines.curate_io import _ReadShard
from canvas.pipelines.curate_ledger import ResolveDuplicateOf
from canvas.pipelines.curate_near_dedup import NearDedup
from canvas.pipelines.curate_semdedup import SemanticDedup, _fit, _sample_candidate, _sample_rank
from canvas.pipelines.curate_stages import (
    KEPT,
    REJECTED,
    BasicFilter,
    ClipEmbed,
    ClipScoreFilter,
    Decode,
    ExactDedup,
    _deterministic_batches,
    _with_thumbnail,
)

TestPipeline.__test__ = False  # a Beam class, not a pytest test class


def _png(seed: int, size: tuple[int, int] = (240, 240), fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8))
    buf = io.BytesIO()
    small.resize(size, Image.Resampling.BICUBIC).save(buf, format=fmt)
    return buf.getvalue()


def _raw(
    key: str, image: bytes | None, row: int, caption: str | None = "a photo of something nice"
) -> RawRecord:
    return RawRecord(key, caption, image, f"t#{row}", (0, row))


def _record(key: str, image: bytes, row: int, **kw: object) -> Record:
    rec = decode(_raw(key, image, row), DecodeConfig())
    assert isinstance(rec, Record)
    return dataclasses.replace(rec, **kw)


def _keys(pcoll: beam.PCollection, label: str) -> beam.PCollection:
    return pcoll | label >> beam.Map(lambda r: r.key)


def _why(pcoll: beam.PCollection, label: str) -> beam.PCollection:
    return pcoll | label >> beam.Map(lambda r: (r.key, r.stage, r.duplicate_of))


def test_decode_and_basic_filter_split_records_by_reason() -> None:
    raws = [
        _raw("good", _png(0), 0),
        _raw("null", None, 1),
        _raw("junk", b"not an image", 2),
        _raw("small", _png(1, (150, 300)), 3),
        _raw("short", _png(2), 4, caption="two words"),
    ]
    with TestPipeline() as p:
        decoded = p | beam.Create(raws) | Decode(DecodeConfig())
        filtered = decoded[KEPT] | BasicFilter(BasicFilterConfig())
        assert_that(_keys(filtered[KEPT], "K"), equal_to(["good"]), label="kept")
        assert_that(
            _why(decoded[REJECTED], "D"),
            equal_to([("null", "decode", None), ("junk", "decode", None)]),
            label="decode",
        )
        assert_that(
            _why(filtered[REJECTED], "B"),
            equal_to([("small", "basic_filter", None), ("short", "basic_filter", None)]),
            label="basic",
        )


def test_exact_dedup_rejects_repeated_keys_bytes_and_pixels() -> None:
    records = [
        _record("a", _png(0), 0),
        _record("b", _png(0), 1),  # same bytes as a
        _record("c", _png(0, fmt="BMP"), 2),  # same pixels as a
        _record("a", _png(5), 3),  # a's key again, other picture
        _record("d", _png(6), 4),
    ]
    with TestPipeline() as p:
        out = p | beam.Create(records) | ExactDedup(ExactDedupConfig(), thumbnail_px=32)
        assert_that(_keys(out[KEPT], "K"), equal_to(["a", "d"]), label="kept")
        assert_that(
            _why(out[REJECTED], "R"),
            equal_to([("a", "exact_dedup", "a"), ("b", "exact_dedup", "a"), ("c", "exact_dedup", "a")]),
            label="rejected",
        )
        assert_that(
            out[REJECTED] | beam.Map(lambda r: r.thumbnail is not None),
            equal_to([True] * 3),
            label="thumbnails",
        )


def test_near_dedup_keeps_the_best_copy_and_says_why() -> None:
    big = _png(0, (400, 400), fmt="JPEG")
    small = _png(0, (300, 300), fmt="JPEG")
    # The same picture as `big`, stored small but with a larger original per its row's metadata.
    resized = dataclasses.replace(_record("m-resized", small, 3), original_width=800, original_height=800)
    records = [_record("z-big", big, 0), _record("a-small", small, 1), _record("other", _png(9), 2), resized]
    with TestPipeline() as p:
        out = p | beam.Create(records) | NearDedup(NearDedupConfig(), thumbnail_px=32)
        assert_that(_keys(out[KEPT], "K"), equal_to(["m-resized", "other"]), label="kept")
        assert_that(
            out[REJECTED] | beam.Map(lambda r: (r.key, r.reason.split("; ")[1])),
            equal_to(
                [
                    ("a-small", "kept m-resized: more pixels 800x800 vs 300x300"),
                    ("z-big", "kept m-resized: more pixels 800x800 vs 400x400"),
                ]
            ),
            label="rejected",
        )


def test_clip_score_percentile_keeps_the_top_share() -> None:
    records = [_record(f"k{i}", _png(i), i, clip_score=float(i) / 10) for i in range(10)]
    with TestPipeline() as p:
        out = (
            p
            | beam.Create(records)
            | ClipScoreFilter(ClipScoreConfig(mode="percentile", keep_top_percent=30))
        )
        assert_that(_keys(out[KEPT], "K"), equal_to(["k7", "k8", "k9"]), label="kept")
        assert_that(out[REJECTED] | beam.combiners.Count.Globally(), equal_to([7]), label="rejected")


@pytest.mark.parametrize("carry_records", [False, True], ids=["join-back", "records-travel"])
def test_semantic_dedup_on_planted_embeddings_bounded_by_clusters(carry_records: bool) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(30, 16))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    copy = base[:5] + 0.001 * rng.normal(size=(5, 16))
    copy /= np.linalg.norm(copy, axis=1, keepdims=True)
    img = _png(0)
    records = [
        _record(f"a{i:02d}", img, i, embedding=v.astype(np.float32), clip_score=0.0)
        for i, v in enumerate(base)
    ]
    records += [
        _record(f"b{i:02d}", img, 100 + i, embedding=v.astype(np.float32), clip_score=0.0)
        for i, v in enumerate(copy)
    ]
    cfg = SemDedupConfig(eps=0.01, n_clusters=4, keep="smallest_key")
    with TestPipeline() as p:
        out = p | beam.Create(records) | SemanticDedup(cfg, thumbnail_px=32, carry_records=carry_records)
        assert_that(
            _why(out[REJECTED], "R"),
            equal_to([(f"b{i:02d}", "semantic_dedup", f"a{i:02d}") for i in range(5)]),
            label="rejected",
        )
        assert_that(
            out[KEPT] | beam.Map(lambda r: 0 <= r.cluster_id < 4), equal_to([True] * 30), label="clusters"
        )


def test_clip_embed_runs_the_tiny_model_through_run_inference(tiny_presets: dict) -> None:
    records = [_record(f"k{i}", _png(i), i) for i in range(5)]

    def check(r: Record) -> tuple[str, int, bool, bool]:
        unit = abs(float(np.linalg.norm(r.embedding)) - 1.0) < 1e-4
        return r.key, len(r.embedding), unit, -1.0 <= r.clip_score <= 1.0

    with TestPipeline() as p:
        out = p | beam.Create(records) | ClipEmbed("canvas-tiny-clip", "tiny", batch_size=2)
        assert_that(out | beam.Map(check), equal_to([(f"k{i}", 64, True, True) for i in range(5)]))


def test_clip_batches_group_captions_by_length_whatever_the_arrival_order() -> None:
    # The text tower runs to each batch's longest caption: short captions must not share a batch with
    # long ones, and the batches must not depend on the order records arrive in (bit-identical reruns).
    image = _png(0)
    short, long = "a small red cat", "a long caption " * 12
    records = [_record(f"k{i}", image, i, caption=long if i % 2 else short) for i in range(8)]
    batches = list(_deterministic_batches((0, records), batch_size=4))
    assert [[r.caption for r in b] for b in batches] == [[short] * 4, [long] * 4]
    assert sorted(r.key for b in batches for r in b) == [f"k{i}" for i in range(8)]
    again = list(_deterministic_batches((0, records[::-1]), batch_size=4))
    assert [[r.key for r in b] for b in again] == [[r.key for r in b] for b in batches]


def test_duplicate_of_always_names_a_kept_record() -> None:
    # A survivor of one dedup stage can be removed by a later stage; the ledger must then point at the
    # record that finally stands for the picture, or at nothing (with the reason saying why).
    def rej(key: str, stage: str, of: str | None) -> Rejection:
        return Rejection(key=key, stage=stage, reason=f"{stage} of {of}", source=f"t#{key}", duplicate_of=of)

    kept = [_record("c", _png(0), 0)]
    rejected = [
        rej("b", "exact_dedup", "a"),  # b -> a -> c
        rej("a", "near_dedup", "c"),
        rej("p", "exact_dedup", "q"),  # p -> q -> r -> c: the longest chain the stages can make
        rej("q", "near_dedup", "r"),
        rej("r", "semantic_dedup", "c"),
        rej("c", "exact_dedup", "c"),  # a second row with key c: c's first row is kept
        rej("x", "near_dedup", "y"),  # y survived near dedup, then failed the score filter
        rej("y", "clip_score", None),
        rej("z", "decode", None),
    ]
    with TestPipeline() as p:
        out = (p | "K" >> beam.Create(kept), p | "R" >> beam.Create(rejected)) | ResolveDuplicateOf()
        assert_that(
            out | beam.Map(lambda r: (r.key, r.duplicate_of)),
            equal_to(
                [("b", "c"), ("a", "c"), ("p", "c"), ("q", "c"), ("r", "c"), ("c", "c"), ("x", None)]
                + [("y", None), ("z", None)]
            ),
            label="pointers",
        )
        reasons = out | beam.Filter(lambda r: r.key in ("b", "x")) | beam.Map(lambda r: (r.key, r.reason))
        assert_that(
            reasons,
            equal_to(
                [
                    ("b", "exact_dedup of a; a is itself a duplicate of c"),
                    ("x", "near_dedup of y; y was not kept either (removed at clip_score)"),
                ]
            ),
            label="reasons",
        )


def test_shard_reader_records_a_damaged_gzip_shard_instead_of_failing_the_read(tmp_path) -> None:  # noqa: ANN001
    # Through Beam's FileSystems, as the pipeline reads: bytes garbled inside a .tar.gz are damage in the
    # data (one unreadable record after the complete samples), not a failed read for the runner to retry.
    import tarfile

    path = tmp_path / "shard.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for i in range(4):
            image = _png(i, (64, 64))
            info = tarfile.TarInfo(f"{i:06d}.png")
            info.size = len(image)
            tar.addfile(info, io.BytesIO(image))
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    rows = list(_ReadShard().process((3, str(path))))
    assert [r.key for r in rows[:-1]] == [f"{i:06d}" for i in range(len(rows) - 1)]
    assert rows[-1].error is not None and "corrupt tar" in rows[-1].error


def test_model_stages_open_records_that_another_process_decoded_under_a_higher_limit(
    tiny_presets: dict, monkeypatch
) -> None:  # noqa: ANN001
    # decode raises Pillow's process-wide limit to the configured max_pixels, but on a cluster the model
    # stages may run in a process that never decoded: there Pillow's default would refuse a large image.
    from PIL import Image as PILImage

    from canvas.pipelines.curate_models import ClipModelHandler, NsfwModelHandler

    records = [_record(f"k{i}", _png(i, (300, 300)), i) for i in range(2)]  # 90,000 pixels
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1_000)  # a fresh process, limit far below the images
    clip = ClipModelHandler("canvas-tiny-clip", "tiny")
    assert len(list(clip.run_inference(records, clip.load_model()))) == 2
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1_000)
    nsfw = NsfwModelHandler()
    assert len(list(nsfw.run_inference(records, nsfw.load_model()))) == 2
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1_000)
    rejection = Rejection(key="k0", stage="near_dedup", reason="dup", source="t#0")
    assert _with_thumbnail(rejection, records[0], 32).thumbnail is not None


def test_near_dedup_stage_equals_the_global_search_without_gathering_all_hashes() -> None:
    from apache_beam.metrics.metric import MetricsFilter

    from canvas.curation.near_dedup import find_near_duplicates
    from canvas.pipelines.curate_near_dedup import _hash_item

    rng = np.random.default_rng(5)
    base = _record("base", _png(0, (32, 32)), 0)  # small: beam.Create pickles every record's bytes
    hashes = [int(v) for v in rng.integers(0, 2**63, 300, dtype=np.uint64)]
    for j in range(60):  # copies 0..10 bits away: some within the radius 8, some not
        h = hashes[j]
        for bit in rng.choice(64, int(rng.integers(0, 11)), replace=False):
            h ^= 1 << int(bit)
        hashes.append(h)
    records = [
        dataclasses.replace(
            base, key=f"k{i:04d}", source=f"t#{i}", ordinal=(0, i), phash=h, width=100 + i % 7
        )
        for i, h in enumerate(hashes)
    ]
    expected = find_near_duplicates([_hash_item(r) for r in records], 8)
    assert len(expected) > 20
    gone = {d.uid: d.kept for d in expected}
    p = TestPipeline()
    out = p | beam.Create(records) | NearDedup(NearDedupConfig(), thumbnail_px=16)
    assert_that(
        _keys(out[KEPT], "K"), equal_to([r.key for r in records if r.source not in gone]), label="kept"
    )
    assert_that(
        out[REJECTED] | beam.Map(lambda r: (r.source, r.duplicate_of)),
        equal_to(sorted(gone.items())),
        label="rej",
    )
    result = p.run()
    result.wait_until_finish()
    sizes = result.metrics().query(MetricsFilter().with_name("near_dedup_bucket_size"))["distributions"]
    assert sizes and max(s.committed.max for s in sizes) < len(records) // 4  # no worker saw every hash


def test_clip_score_percentile_threshold_equals_the_sorted_one() -> None:
    from canvas.curation.filters import percentile_threshold
    from canvas.pipelines.curate_stages import THRESHOLD

    rng = np.random.default_rng(6)
    scores = np.concatenate([np.round(rng.normal(0.3, 0.02, 300), 3), 0.31 + rng.random(100) * 1e-4])
    base = _record("base", _png(0, (32, 32)), 0)  # small: beam.Create pickles every record's bytes
    records = [
        dataclasses.replace(base, key=f"k{i:04d}", source=f"t#{i}", clip_score=float(s))
        for i, s in enumerate(scores)
    ]
    with TestPipeline() as p:
        out = (
            p
            | beam.Create(records)
            | ClipScoreFilter(ClipScoreConfig(mode="percentile", keep_top_percent=30))
        )
        assert_that(out[THRESHOLD], equal_to([percentile_threshold(scores, 30)]), label="threshold")


def test_semdedup_sample_candidates_hold_the_same_sample_and_few_others() -> None:
    # Top.Of keeps `size` per bundle before grouping: with small bundles everything reached its grouping.
    # The candidate filter must pass the same top `size` ranks (the sample, so the centroids) and ~size more.
    members = [
        Record(f"{i:032x}", "c", b"", f"s#{i}", (0, i), 1, 1, "", "", 0, embedding=None)
        for i in range(20_000)
    ]
    size = 500
    top = sorted(members, key=_sample_rank)[-size:]
    candidates = [m for m in members if _sample_candidate(m, len(members), size)]
    assert sorted(candidates, key=_sample_rank)[-size:] == top
    assert size <= len(candidates) < 1.5 * size
    assert all(_sample_candidate(m, 600, size) for m in members[:600])  # n near the size: all of them


@pytest.mark.parametrize("carry_records", [False, True], ids=["join-back", "records-travel"])
def test_semantic_dedup_border_pass_finds_the_copy_that_k_means_put_in_the_next_cluster(
    carry_records: bool,
) -> None:
    # Two clusters, mirror images of each other (coordinates 0 and 1 swapped), so the border between their
    # centroids is the plane of equal coordinates 0 and 1; two copies sit just either side of it.
    rng = np.random.default_rng(1)
    e0, e1 = np.eye(16)[0], np.eye(16)[1]
    noise = 0.1 * rng.normal(size=(500, 16)) * (np.arange(16) >= 2)  # enough that the copies barely move them
    around = [*(e0 + noise), *(e1 + noise)]
    mid, step = (e0 + e1) / np.sqrt(2), 0.003 * (e0 - e1)
    vectors = [*around, mid + step, mid - step]  # the last two: copies (cosine 0.99996), margins 0.006
    vectors = [v / np.linalg.norm(v) for v in vectors]
    # pool-like records (no image): 1002 pictures made Create's pickling (bz2) nearly all of the test's time
    base = dataclasses.replace(_record("k", _png(0), 0), image=b"", clip_score=0.0)
    records = [
        dataclasses.replace(
            base, key=f"k{i:04d}", source=f"s#{i}", ordinal=(0, i), embedding=v.astype(np.float32)
        )
        for i, v in enumerate(vectors)
    ]

    def run(margin: float) -> list:
        cfg = SemDedupConfig(eps=0.01, n_clusters=2, keep="smallest_key", border_margin=margin)
        with TestPipeline() as p:
            out = p | beam.Create(records) | SemanticDedup(cfg, thumbnail_px=32, carry_records=carry_records)
            rejected = out[REJECTED] | beam.Map(
                lambda r: (r.key, r.duplicate_of, "across the border" in r.reason)
            )
            assert_that(out[KEPT] | beam.combiners.Count.Globally(), equal_to([len(records) - found[margin]]))
            assert_that(rejected, equal_to(expected[margin]), label="rejected")
        return []

    found = {0.0: 0, 0.01: 1}
    expected = {0.0: [], 0.01: [("k1001", "k1000", True)]}
    run(0.0)  # SemDeDup within clusters alone: the copies sit in two clusters, nothing is found
    run(0.01)


@pytest.mark.parametrize("carry_records", [False, True], ids=["join-back", "records-travel"])
@pytest.mark.parametrize("visitor_first", [False, True], ids=["home-ranks-first", "visitor-ranks-first"])
def test_semantic_dedup_border_pass_finds_a_copy_whose_original_is_deep_in_the_next_cluster(
    carry_records: bool, visitor_first: bool
) -> None:
    # As above, two mirror-image clusters, but only the copy is near the border: the original lies well
    # inside the other cluster (gap 0.03 > margin), so a pass over pairs of clusters' border rows alone
    # never holds both (on a 1M pool of random directions, a quarter of the split semantic copies). The
    # copy visits the original's cluster and meets every survivor there.
    rng = np.random.default_rng(1)
    e0, e1 = np.eye(16)[0], np.eye(16)[1]
    noise = 0.1 * rng.normal(size=(500, 16)) * (np.arange(16) >= 2)
    mid, across = (e0 + e1) / np.sqrt(2), (e1 - e0) / np.sqrt(2)
    original = mid + 0.0212 * across  # gap to the other centroid ~ +0.03: no border row
    copy = mid - 0.0035 * across  # ~0.005 on cluster 0's side: within the margin of cluster 1
    vectors = [*(e0 + noise), *(e1 + noise), original, copy]
    vectors = [v / np.linalg.norm(v) for v in vectors]
    base = dataclasses.replace(_record("k", _png(0), 0), image=b"", clip_score=0.0)
    keys = [f"k{i:04d}" for i in range(len(vectors))]
    if visitor_first:  # smallest_key keeps the smaller key: the copy's
        keys[-2:] = keys[-1], keys[-2]
    records = [
        dataclasses.replace(base, key=k, source=f"s#{i}", ordinal=(0, i), embedding=v.astype(np.float32))
        for i, (k, v) in enumerate(zip(keys, vectors, strict=True))
    ]
    cfg = SemDedupConfig(eps=0.01, n_clusters=2, keep="smallest_key", border_margin=0.01)
    # The geometry the test is about, on the pipeline's own centroids.
    ids, sims = nearest_centroids(
        np.stack(vectors[-2:]).astype(np.float32), _fit(records, len(records), cfg), 2
    )
    assert ids[0, 0] != ids[1, 0], "the copies must sit in two clusters"
    assert sims[0, 0] - sims[0, 1] > 0.02 and sims[1, 0] - sims[1, 1] < 0.01
    kept_key, removed_key = (keys[-1], keys[-2]) if visitor_first else (keys[-2], keys[-1])
    with TestPipeline() as p:
        out = p | beam.Create(records) | SemanticDedup(cfg, thumbnail_px=32, carry_records=carry_records)
        rejected = out[REJECTED] | beam.Map(
            lambda r: (r.key, r.duplicate_of, "across the border" in r.reason)
        )
        assert_that(out[KEPT] | beam.combiners.Count.Globally(), equal_to([len(records) - 1]))
        assert_that(rejected, equal_to([(removed_key, kept_key, True)]), label="rejected")
