"""The numbers behind report.json and report.html, computed where the records are.

The launcher must not read the output back to summarise it: on a cluster run that is the whole data
set. Beam combiners reduce it to a few kilobytes instead: rejections per stage, score histograms (fine
fixed bins, regrouped for the plot), cluster sizes, the largest duplicate groups and the first
rejections by key (`ReportStats`, one JSON file). They see each record as a few small facts, never its
image: a PCollection that feeds several consumers is copied for each, and copying every image again
cost more than the statistics. The groups' pictures, a few dozen, are read afterwards from the written
shards (`attach_group_pictures`); `canvas.curation.report` turns the whole into the report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from canvas.core.formats.curated import shard_of
from canvas.curation.records import Record, Rejection
from canvas.curation.report import FIRST_REJECTIONS, MAX_GROUPS, MAX_REMOVED_PER_GROUP

__all__ = ["HISTOGRAM_BINS", "SCORE_RANGES", "ReportStats", "ScoreHistogram", "attach_group_pictures"]

HISTOGRAM_BINS = 2000  # 0.001 wide for a cosine: far finer than any plot regroups them into
SCORE_RANGES = {"clip_score": (-1.0, 1.0), "nsfw_score": (0.0, 1.0)}


class _Facts(NamedTuple):
    """What the report needs of one kept record (stage None) or one rejection."""

    key: str
    source: str
    stage: str | None
    reason: str | None
    duplicate_of: str | None
    score: float | None
    clip_score: float | None
    nsfw_score: float | None
    cluster_id: int | None


def _kept_facts(r: Record) -> _Facts:
    return _Facts(r.key, r.source, None, None, None, None, r.clip_score, r.nsfw_score, r.cluster_id)


def _rejected_facts(r: Rejection) -> _Facts:
    return _Facts(
        r.key, r.source, r.stage, r.reason, r.duplicate_of, r.score, r.clip_score, r.nsfw_score, r.cluster_id
    )


class ScoreHistogram(beam.CombineFn):
    """Scores -> counts in `bins` equal bins over [low, high], plus count, min and max (mergeable)."""

    def __init__(self, low: float, high: float, bins: int = HISTOGRAM_BINS) -> None:
        self.low, self.high, self.bins = low, high, bins

    def create_accumulator(self) -> tuple[np.ndarray, float, float]:
        return np.zeros(self.bins, dtype=np.int64), float("inf"), float("-inf")

    def add_input(
        self, acc: tuple[np.ndarray, float, float], value: float
    ) -> tuple[np.ndarray, float, float]:
        counts, lo, hi = acc
        i = int((value - self.low) / (self.high - self.low) * self.bins)
        counts[min(max(i, 0), self.bins - 1)] += 1
        return counts, min(lo, value), max(hi, value)

    def merge_accumulators(
        self, accs: Iterable[tuple[np.ndarray, float, float]]
    ) -> tuple[np.ndarray, float, float]:
        counts, lo, hi = self.create_accumulator()
        for c, a, b in accs:
            counts = counts + c
            lo, hi = min(lo, a), max(hi, b)
        return counts, lo, hi

    def extract_output(self, acc: tuple[np.ndarray, float, float]) -> dict[str, Any]:
        counts, lo, hi = acc
        n = int(counts.sum())
        return {
            "low": self.low,
            "high": self.high,
            "counts": counts.tolist(),
            "count": n,
            "min": lo if n else None,
            "max": hi if n else None,
        }


def _scores(facts: _Facts, column: str) -> list[float]:
    value = getattr(facts, column)
    return [] if value is None or not np.isfinite(value) else [float(value)]  # a NaN has no bin


def _assemble(
    _: None,
    kept: int,
    by_stage: list[tuple[str, int]],
    cluster_sizes: list[int],
    chosen: list[tuple[str, int]],
    removed: list[tuple[str, list[dict[str, Any]]]],
    first: list[tuple[str, str, str, str]],
    clip_threshold: list[float],
    **histograms: dict[str, Any],
) -> dict[str, Any]:
    removed_by_key = dict(removed)
    return {
        "kept_count": kept,
        "rejected_by_stage": dict(sorted(by_stage)),
        "histograms": dict(sorted(histograms.items())),
        "cluster_sizes": sorted(cluster_sizes, reverse=True),
        "duplicate_groups": [{"kept": key, "removed": removed_by_key.get(key, [])} for key, _count in chosen],
        "first_rejections": [
            {"key": key, "stage": stage, "reason": reason} for key, _source, stage, reason in first
        ],
        "clip_threshold": clip_threshold[0] if clip_threshold else None,
    }


def _removed_row(f: _Facts) -> dict[str, Any]:
    # Dedup reasons end in "; kept K: WHY" (curation/best_copy.py): the report shows why the survivor won.
    why = (f.reason or "").rpartition(f"; kept {f.duplicate_of}: ")[2] or None
    return {"key": f.key, "source": f.source, "stage": f.stage, "score": f.score, "why": why}


def _write_json(stats: dict[str, Any], path: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(stats).encode())


class ReportStats(beam.PTransform):
    """(kept Records, Rejections, optional one-element PCollection of the effective CLIP threshold) ->
    one JSON file at `path` with the report's numbers (pictures: `attach_group_pictures`)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def expand(self, pcolls: tuple) -> beam.PCollection:
        kept, rejected, clip_threshold = pcolls
        p = kept.pipeline
        kept = kept | "KeptFacts" >> beam.Map(_kept_facts)
        rejected = rejected | "RejectedFacts" >> beam.Map(_rejected_facts)
        both = (kept, rejected) | "KeptAndRejected" >> beam.Flatten()
        histograms = {
            column: beam.pvalue.AsSingleton(
                both
                | f"{column}Values" >> beam.FlatMap(_scores, column=column)
                | f"{column}Histogram" >> beam.CombineGlobally(ScoreHistogram(*SCORE_RANGES[column]))
            )
            for column in SCORE_RANGES
        }
        group_sizes = (
            rejected
            | "PointedAt" >> beam.FlatMap(lambda f: [f.duplicate_of] if f.duplicate_of else [])
            | "GroupSizes" >> beam.combiners.Count.PerElement()
            # the largest groups, then the smallest kept key: the n smallest by (-size, key)
            | "LargestGroups"
            >> beam.combiners.Top.Of(MAX_GROUPS, key=lambda kv: (-kv[1], kv[0]), reverse=True)
        )
        chosen = beam.pvalue.AsSingleton(group_sizes)
        removed = (
            rejected
            | "InChosenGroups" >> beam.Filter(lambda f, c: f.duplicate_of in dict(c), chosen)
            | "ByGroup" >> beam.Map(lambda f: (f.duplicate_of, _removed_row(f)))
            # a combiner, not a GroupByKey: a picture copied a million times must not meet in one list
            | "FirstRemoved"
            >> beam.combiners.Top.PerKey(
                MAX_REMOVED_PER_GROUP, key=lambda row: (row["key"], row["source"]), reverse=True
            )
        )
        return (
            p
            | "One" >> beam.Create([None])
            | "Assemble"
            >> beam.Map(
                _assemble,
                kept=beam.pvalue.AsSingleton(kept | "CountKept" >> beam.combiners.Count.Globally()),
                by_stage=beam.pvalue.AsList(
                    rejected
                    | "Stage" >> beam.Map(lambda f: f.stage)
                    | "PerStage" >> beam.combiners.Count.PerElement()
                ),
                cluster_sizes=beam.pvalue.AsList(
                    both
                    | "ClusterIds" >> beam.FlatMap(lambda f: [] if f.cluster_id is None else [f.cluster_id])
                    | "ClusterSizes" >> beam.combiners.Count.PerElement()
                    | "Sizes" >> beam.Values()
                ),
                chosen=chosen,
                removed=beam.pvalue.AsList(removed),
                first=beam.pvalue.AsSingleton(
                    rejected
                    | "Rows" >> beam.Map(lambda f: (f.key, f.source, f.stage, f.reason))
                    | "FirstRejections" >> beam.combiners.Top.Smallest(FIRST_REJECTIONS)
                ),
                clip_threshold=beam.pvalue.AsList(clip_threshold),
                **histograms,
            )
            | "Write" >> beam.Map(_write_json, path=self.path)
        )


_SHARD_NAME = re.compile(r"part-(\d+)-of-(\d+)\.parquet$")


def _lookup(folder: str, keys: set[str], column: str) -> dict[tuple[str, str], bytes]:
    """{(key, source): `column`} of the rows with these keys, reading only the shards and row groups
    that can hold them (rows go to shard `shard_of(key)`, sorted by key, in small row groups)."""
    shards: dict[int, tuple[str, int]] = {}
    for m in FileSystems.match([f"{folder}/*.parquet"])[0].metadata_list:
        found = _SHARD_NAME.search(m.path)
        if found:
            shards[int(found.group(1))] = (m.path, int(found.group(2)))
    out: dict[tuple[str, str], bytes] = {}
    for index, (path, n_shards) in sorted(shards.items()):
        here = {k for k in keys if shard_of(k, n_shards) == index}
        if not here:
            continue
        with FileSystems.open(path) as handle:
            pf = pq.ParquetFile(handle)
            key_column = pf.schema_arrow.get_field_index("key")
            for group in range(pf.num_row_groups):
                stats = pf.metadata.row_group(group).column(key_column).statistics
                if (
                    stats is not None
                    and stats.has_min_max
                    and not any(stats.min <= k <= stats.max for k in here)
                ):
                    continue
                rows = pf.read_row_group(group, columns=["key", "source", column]).to_pylist()
                out.update(
                    {(r["key"], r["source"]): r[column] for r in rows if r["key"] in here and r[column]}
                )
    return out


def attach_group_pictures(stats: dict[str, Any], curated_dir: str, rejected_dir: str) -> None:
    """Add each duplicate group's kept image and its removed copies' thumbnails (bytes) to `stats`."""
    groups = stats["duplicate_groups"]
    thumbnails = _lookup(rejected_dir, {r["key"] for g in groups for r in g["removed"]}, "thumbnail")
    images: dict[str, bytes] = {}
    # the kept row's source is not in the statistics; the earliest row of its key stands for it
    for (key, _source), image in sorted(_lookup(curated_dir, {g["kept"] for g in groups}, "image").items()):
        images.setdefault(key, image)
    for g in groups:
        g["kept_image"] = images.get(g["kept"])
        for r in g["removed"]:
            r["thumbnail"] = thumbnails.get((r["key"], r["source"]))
