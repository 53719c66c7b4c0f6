"""The report's statistics, computed in the pipeline (`ReportStats`) so that the launcher never reads the
output back: checked on the real DirectRunner against numbers worked out by hand."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from PIL import Image

from canvas.core.formats.curated import REJECTED_SCHEMA, curated_schema
from canvas.curation.decode import DecodeConfig, decode
from canvas.curation.records import RawRecord, Record, Rejection
from canvas.curation.report import MAX_REMOVED_PER_GROUP, regroup, render_html, summarize
from canvas.pipelines.curate_io import WriteSortedParquet, record_row, rejection_row
from canvas.pipelines.curate_report import HISTOGRAM_BINS, ReportStats, ScoreHistogram, attach_group_pictures

TestPipeline.__test__ = False


def _record(key: str, row: int, **fields: object) -> Record:
    buf = io.BytesIO()
    Image.new("RGB", (240, 240), (row * 40, 90, 200)).save(buf, format="PNG")
    record = decode(RawRecord(key, "a caption", buf.getvalue(), f"t#{row}", (0, row)), DecodeConfig())
    assert isinstance(record, Record)
    return dataclasses.replace(record, **fields)


def _dup(key: str, of: str, stage: str = "near_dedup") -> Rejection:
    reason = f"near duplicate of {of}: pHash Hamming distance 2 <= 8; kept {of}: more pixels 2x2 vs 1x1"
    return Rejection(
        key=key, stage=stage, reason=reason, source=f"t#{key}", duplicate_of=of, thumbnail=b"jpg"
    )


def test_report_stats_count_group_and_bin_without_reading_the_output(tmp_path: Path) -> None:
    kept = [_record(k, i, clip_score=s, cluster_id=c) for i, (k, s, c) in enumerate(
        [("a", 0.30, 0), ("b", 0.10, 0), ("c", -0.20, 1)]
    )]  # fmt: skip
    rejected = [_dup(f"a{i}", "a") for i in range(6)] + [_dup("b1", "b"), _dup("c1", "c"), _dup("c2", "c")]
    rejected += [
        Rejection(key="z", stage="clip_score", reason="low", source="t#z", clip_score=0.05, cluster_id=None),
        Rejection(key="y", stage="decode", reason="null", source="t#y"),
    ]
    path = tmp_path / "stats.json"
    with TestPipeline() as p:
        k, r = p | "K" >> beam.Create(kept), p | "R" >> beam.Create(rejected)
        _ = (k, r, p | "T" >> beam.Create([0.25])) | ReportStats(str(path))
        # written as the pipeline writes them: several shards, so the pictures must be found by key
        _ = (
            k
            | "KR" >> beam.Map(record_row)
            | "WK" >> WriteSortedParquet(f"{tmp_path}/c", curated_schema(None), 2)
        )
        _ = (
            r
            | "RR" >> beam.Map(rejection_row)
            | "WR" >> WriteSortedParquet(f"{tmp_path}/r", REJECTED_SCHEMA, 2)
        )
    stats = json.loads(path.read_text())
    assert "kept_image" not in stats["duplicate_groups"][0]  # pictures never pass through the statistics
    attach_group_pictures(stats, f"{tmp_path}/c", f"{tmp_path}/r")
    assert stats["kept_count"] == 3 and stats["clip_threshold"] == 0.25
    assert stats["rejected_by_stage"] == {"clip_score": 1, "decode": 1, "near_dedup": 9}
    clip = stats["histograms"]["clip_score"]
    assert (clip["count"], clip["min"], clip["max"]) == (4, -0.20, 0.30)  # kept + rejected after scoring
    assert sum(clip["counts"]) == 4 and len(clip["counts"]) == HISTOGRAM_BINS
    assert stats["histograms"]["nsfw_score"]["count"] == 0
    assert stats["cluster_sizes"] == [2, 1]
    groups = stats["duplicate_groups"]
    assert [(g["kept"], [r["key"] for r in g["removed"]]) for g in groups] == [
        ("a", [f"a{i}" for i in range(MAX_REMOVED_PER_GROUP)]),  # largest first, at most 4 shown
        ("c", ["c1", "c2"]),  # 2 removed: before b (1)
        ("b", ["b1"]),
    ]
    images = {g["kept"]: g["kept_image"] for g in groups}
    assert images == {r.key: r.image for r in kept}
    assert all(row["thumbnail"] == b"jpg" for g in groups for row in g["removed"])
    assert {row["why"] for g in groups for row in g["removed"]} == {
        "more pixels 2x2 vs 1x1"
    }  # survivor's edge
    assert [r["key"] for r in stats["first_rejections"]][:3] == ["a0", "a1", "a2"]
    report = summarize(stats, input_count=14, thresholds={})
    assert report["invariant_holds"] and report["rejected_count"] == 11
    assert report["remaining_after_stage"]["decode"] == 13
    th = {"clip_score": {"mode": "off"}, "nsfw": {}}
    meta = {"clip_model": "m", "clip_pretrained": None, "runner": "r", "notes": {}, "thresholds": th}
    assert "kept because: more pixels 2x2 vs 1x1" in render_html({**report, **meta}, stats)


def test_histogram_merges_and_regroups_for_the_plot() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(0.1, 0.05, 1000)
    fn = ScoreHistogram(-1.0, 1.0)
    parts = [fn.create_accumulator() for _ in range(3)]
    for i, v in enumerate(values):
        parts[i % 3] = fn.add_input(parts[i % 3], float(v))
    hist = fn.extract_output(fn.merge_accumulators(parts))
    assert (
        hist["count"] == 1000
        and np.isclose(hist["min"], values.min())
        and np.isclose(hist["max"], values.max())
    )
    edges, counts = regroup(hist)
    assert counts.sum() == 1000 and len(counts) == 50 and len(edges) == 51
    assert edges[0] <= values.min() and edges[-1] >= values.max() - 1e-9
    # the plot's bars agree with numpy's on the same edges, up to the fine bins' 0.001 width
    reference, _ = np.histogram(values, bins=edges)
    assert np.abs(reference - counts).sum() <= 0.02 * 1000
