"""The numbers behind report.json and report.html, computed where the records are.

The launcher must not read the output back to summarise it: on a cluster run that is the whole data
set. Beam combiners reduce it to a few kilobytes instead: rejections per stage, score histograms (fine
fixed bins, regrouped for the plot), cluster sizes, the largest duplicate groups with their pictures and
the first rejections by key. One JSON file holds them (`ReportStats`); `curation.report` turns it into
the report.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from curation.records import Record, Rejection
from curation.report import FIRST_REJECTIONS, MAX_GROUPS, MAX_REMOVED_PER_GROUP

__all__ = ["HISTOGRAM_BINS", "SCORE_RANGES", "ScoreHistogram", "ReportStats"]

HISTOGRAM_BINS = 2000  # 0.001 wide for a cosine: far finer than any plot regroups them into
SCORE_RANGES = {"clip_score": (-1.0, 1.0), "nsfw_score": (0.0, 1.0)}


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


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _scores(record: Record | Rejection, column: str) -> list[float]:
    value = getattr(record, column)
    return [] if value is None else [float(value)]


def _assemble(
    _: None,
    kept: int,
    by_stage: list[tuple[str, int]],
    cluster_sizes: list[int],
    chosen: list[tuple[str, int]],
    removed: list[tuple[str, list[dict[str, Any]]]],
    kept_images: list[tuple[str, str, bytes]],
    first: list[tuple[str, str, str, str]],
    clip_threshold: list[float],
    **histograms: dict[str, Any],
) -> dict[str, Any]:
    removed_by_key = dict(removed)
    images: dict[str, bytes] = {}
    for key, _source, image in sorted(kept_images, reverse=True):  # the earliest row of a repeated key wins
        images[key] = image
    return {
        "kept_count": kept,
        "rejected_by_stage": dict(sorted(by_stage)),
        "histograms": {name.removesuffix("_histogram"): h for name, h in sorted(histograms.items())},
        "cluster_sizes": sorted(cluster_sizes, reverse=True),
        "duplicate_groups": [
            {"kept": key, "kept_image": _b64(images.get(key)), "removed": removed_by_key.get(key, [])}
            for key, _count in chosen
        ],
        "first_rejections": [
            {"key": key, "stage": stage, "reason": reason} for key, _source, stage, reason in first
        ],
        "clip_threshold": clip_threshold[0] if clip_threshold else None,
    }


def _removed_row(r: Rejection) -> dict[str, Any]:
    return {
        "key": r.key,
        "stage": r.stage,
        "score": r.score,
        "thumbnail": _b64(r.thumbnail),
        "source": r.source,
    }


def _write_json(stats: dict[str, Any], path: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(stats).encode())


class ReportStats(beam.PTransform):
    """(kept Records, Rejections, optional one-element PCollection of the effective CLIP threshold) ->
    one JSON file at `path` with everything the report needs."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def expand(self, pcolls: tuple) -> beam.PCollection:
        kept, rejected, clip_threshold = pcolls
        p = kept.pipeline
        both = (kept, rejected) | "KeptAndRejected" >> beam.Flatten()
        histograms = {
            f"{column}_histogram": beam.pvalue.AsSingleton(
                both
                | f"{column}Values" >> beam.FlatMap(_scores, column=column)
                | f"{column}Histogram" >> beam.CombineGlobally(ScoreHistogram(*SCORE_RANGES[column]))
            )
            for column in SCORE_RANGES
        }
        group_sizes = (
            rejected
            | "PointedAt" >> beam.FlatMap(lambda r: [r.duplicate_of] if r.duplicate_of else [])
            | "GroupSizes" >> beam.combiners.Count.PerElement()
            # the largest groups, then the smallest kept key: the n smallest by (-size, key)
            | "LargestGroups"
            >> beam.combiners.Top.Of(MAX_GROUPS, key=lambda kv: (-kv[1], kv[0]), reverse=True)
        )
        chosen = beam.pvalue.AsSingleton(group_sizes)
        removed = (
            rejected
            | "InChosenGroups" >> beam.Filter(lambda r, c: r.duplicate_of in dict(c), chosen)
            | "ByGroup" >> beam.Map(lambda r: (r.duplicate_of, _removed_row(r)))
            # a combiner, not a GroupByKey: a picture copied a million times must not meet in one list
            | "FirstRemoved"
            >> beam.combiners.Top.PerKey(
                MAX_REMOVED_PER_GROUP, key=lambda row: (row["key"], row["source"]), reverse=True
            )
        )
        kept_images = (
            kept
            | "ChosenKept" >> beam.Filter(lambda r, c: r.key in dict(c), chosen)
            | "KeptImage" >> beam.Map(lambda r: (r.key, r.source, r.image))
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
                    | "Stage" >> beam.Map(lambda r: r.stage)
                    | "PerStage" >> beam.combiners.Count.PerElement()
                ),
                cluster_sizes=beam.pvalue.AsList(
                    both
                    | "ClusterIds" >> beam.FlatMap(lambda r: [] if r.cluster_id is None else [r.cluster_id])
                    | "ClusterSizes" >> beam.combiners.Count.PerElement()
                    | "Sizes" >> beam.Values()
                ),
                chosen=chosen,
                removed=beam.pvalue.AsList(removed),
                kept_images=beam.pvalue.AsList(kept_images),
                first=beam.pvalue.AsSingleton(
                    rejected
                    | "Rows" >> beam.Map(lambda r: (r.key, r.source, r.stage, r.reason))
                    | "FirstRejections" >> beam.combiners.Top.Smallest(FIRST_REJECTIONS)
                ),
                clip_threshold=beam.pvalue.AsList(clip_threshold),
                **histograms,
            )
            | "Write" >> beam.Map(_write_json, path=self.path)
        )
