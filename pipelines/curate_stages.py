"""The curation stages as Beam composite PTransforms. Each takes a PCollection of `Record`s and returns
`{"kept": records, "rejected": rejections}`; the logic itself lives in `curation/` (small pure DoFns here).
A switched-off stage passes records through and rejects nothing."""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections.abc import Callable, Iterable, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import RunInference

from canvas.curation.config import ClipScoreConfig
from canvas.curation.decode import DecodeConfig, allow_in_pillow, decode, open_rgb, thumbnail
from canvas.curation.exact_dedup import ExactDedupConfig, dedup_same_key, dedup_same_pixels
from canvas.curation.filters import (
    SCORE_BINS,
    BasicFilterConfig,
    basic_filter_rejection,
    clip_score_rejection,
    nsfw_rejection,
    percentile_bin,
    score_bin,
    threshold_in_bin,
)
from canvas.curation.language import detector
from canvas.curation.nsfw import NsfwConfig
from canvas.curation.pool import metadata_record
from canvas.curation.records import RawRecord, Record, Rejection, file_and_row
from canvas.pipelines.curate_models import ClipModelHandler, NsfwModelHandler

KEPT = "kept"
REJECTED = "rejected"
THRESHOLD = "threshold"
BATCHES_PER_BUCKET = 4  # ClipEmbed: a bucket holds about this many model batches


def _outputs(kept: beam.PCollection, rejected: beam.PCollection) -> dict[str, beam.PCollection]:
    return {KEPT: kept, REJECTED: rejected}


def _passthrough(records: beam.PCollection, label: str) -> dict[str, beam.PCollection]:
    return _outputs(records, records.pipeline | f"{label}NoRejects" >> beam.Create([]))


def _rejected(rej: Rejection) -> beam.pvalue.TaggedOutput:
    Metrics.counter("curate", f"rejected_{rej.stage}").inc()
    return beam.pvalue.TaggedOutput(REJECTED, rej)


def _with_thumbnail(rej: Rejection, record: Record, px: int) -> Rejection:
    """Attach a small picture of a removed duplicate, so the report can show it beside the kept one."""
    if not record.image:  # a pool row: metadata and embeddings only
        return rej
    try:
        allow_in_pillow(record.width * record.height)
        return dataclasses.replace(rej, thumbnail=thumbnail(open_rgb(record.image), px))
    except Exception:  # noqa: BLE001 - the image decoded once already; a thumbnail is never worth a crash
        return rej


# 1. Decode and validate ------------------------------------------------------------------------------


class _DecodeFn(beam.DoFn):
    def __init__(
        self,
        config: DecodeConfig,
        crop_scales: tuple[float, ...] = (),
        require_uid: bool = True,
        keep_embedding: bool = True,
    ) -> None:
        self.config = config
        self.crop_scales = crop_scales
        self.require_uid = require_uid
        self.keep_embedding = keep_embedding

    def process(self, raw: RawRecord) -> Iterator:
        Metrics.counter("curate", "records_in").inc()
        # A pool row (no image, precomputed embeddings) only needs its uid and embeddings checked; a pool
        # row joined to its downloaded image is decoded and keeps the pool's embeddings and CLIP score.
        if raw.image is None and raw.embedding is not None and raw.error is None:
            out = metadata_record(raw, self.require_uid, self.keep_embedding)
        else:
            out = decode(raw, self.config, self.crop_scales)
            if isinstance(out, Record) and raw.embedding is not None:
                given = metadata_record(raw, self.require_uid, keep_embedding=True)
                out = (
                    given
                    if isinstance(given, Rejection)
                    else dataclasses.replace(
                        out, key=given.key, clip_score=given.clip_score, embedding=given.embedding
                    )
                )
        yield _rejected(out) if isinstance(out, Rejection) else out


class Decode(beam.PTransform):
    """RawRecords -> decoded, validated Records (+ rejections: null, empty, undecodable, truncated, bombs)."""

    def __init__(
        self,
        config: DecodeConfig,
        crop_scales: tuple[float, ...] = (),
        require_uid: bool = True,
        keep_embedding: bool = True,
    ) -> None:
        super().__init__()
        self.config = config
        self.crop_scales = crop_scales  # near dedup's central regions, hashed while the pixels are here
        self.require_uid = require_uid  # pool rows: a key that is not a DataComp uid is rejected
        self.keep_embedding = keep_embedding  # False: pool rows go on without it (re-read by ordinal)

    def expand(self, raw: beam.PCollection) -> dict[str, beam.PCollection]:
        fn = _DecodeFn(self.config, self.crop_scales, self.require_uid, self.keep_embedding)
        out = raw | "Decode" >> beam.ParDo(fn).with_outputs(REJECTED, main=KEPT)
        return _outputs(out[KEPT], out[REJECTED])


# 2. DataComp basic filter -----------------------------------------------------------------------------


class _BasicFilterFn(beam.DoFn):
    def __init__(self, config: BasicFilterConfig) -> None:
        self.config = config

    def setup(self) -> None:
        if self.config.language.enabled:
            detector()  # the language model loads once per worker, not inside the first bundle

    def process(self, record: Record) -> Iterator:
        rej = basic_filter_rejection(record, self.config)
        yield record if rej is None else _rejected(rej)


class BasicFilter(beam.PTransform):
    def __init__(self, config: BasicFilterConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        if not self.config.enabled:
            return _passthrough(records, "BasicFilter")
        out = records | "Filter" >> beam.ParDo(_BasicFilterFn(self.config)).with_outputs(REJECTED, main=KEPT)
        return _outputs(out[KEPT], out[REJECTED])


# 3. Exact dedup ---------------------------------------------------------------------------------------


class _KeepOneFn(beam.DoFn):
    """One group of records sharing a key or a picture -> the survivor + rejections of the rest."""

    def __init__(
        self, dedup: Callable[[list[Record]], tuple[Record, list[Rejection]]], thumbnail_px: int
    ) -> None:
        self.dedup = dedup
        self.thumbnail_px = thumbnail_px

    def process(self, element: tuple[str, Iterable[Record]]) -> Iterator:
        group = list(element[1])
        kept, rejections = self.dedup(group)
        yield kept
        by_source = {r.source: r for r in group}
        for rej in rejections:
            yield _rejected(_with_thumbnail(rej, by_source[rej.source], self.thumbnail_px))


class ExactDedup(beam.PTransform):
    """Unique keys (earliest input row wins), then one record per picture (identical bytes or pixels)."""

    def __init__(self, config: ExactDedupConfig, thumbnail_px: int, pixels: bool = True) -> None:
        super().__init__()
        self.config = config
        self.thumbnail_px = thumbnail_px
        self.pixels = pixels  # False: records without images (a pool), unique keys only

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        if not self.config.enabled:
            return _passthrough(records, "ExactDedup")
        rejected = []
        if self.config.unique_keys:
            by_key = (
                records
                | "ByKey" >> beam.Map(lambda r: (r.key, r))
                | "GroupKeys" >> beam.GroupByKey()
                | "OnePerKey"
                >> beam.ParDo(_KeepOneFn(dedup_same_key, self.thumbnail_px)).with_outputs(REJECTED, main=KEPT)
            )
            records = by_key[KEPT]
            rejected.append(by_key[REJECTED])
        if not self.pixels:
            if not rejected:
                return _passthrough(records, "ExactDedupPixels")
            return _outputs(records, rejected[0])
        by_pixels = (
            records
            | "ByPixels" >> beam.Map(lambda r: (r.pixel_sha256, r))
            | "GroupPixels" >> beam.GroupByKey()
            | "OnePerPicture"
            >> beam.ParDo(
                _KeepOneFn(functools.partial(dedup_same_pixels, policy=self.config.keep), self.thumbnail_px)
            ).with_outputs(REJECTED, main=KEPT)
        )
        rejected.append(by_pixels[REJECTED])
        return _outputs(by_pixels[KEPT], tuple(rejected) | "MergeRejects" >> beam.Flatten())


# 5-7. CLIP embedding + score filter, NSFW ------------------------------------------------------------


def _deterministic_batches(element: tuple[int, Iterable[Record]], batch_size: int) -> Iterator[list[Record]]:
    # Captions of similar length share a batch: the text tower runs up to the batch's longest caption
    # (`encode_text_trimmed`), so one 70-token caption among 10-token ones would cost the whole batch 7x.
    ordered = sorted(element[1], key=lambda r: (len(r.caption or ""), r.key, r.source))
    for start in range(0, len(ordered), batch_size):
        yield ordered[start : start + batch_size]


class ClipEmbed(beam.PTransform):
    """Fills `embedding` and `clip_score` with RunInference (one model per worker process).

    Batches are formed from the data, not from bundle timing: records are bucketed by a hash of their key
    and file row, not their folder (about 4 batches per bucket) and each bucket is cut into sorted batches. Float results depend on the
    batch a record is computed in, so this is what makes a rerun give bit-identical embeddings. Within a
    bucket, records are ordered by caption length, so each batch's text is padded as little as possible.
    """

    def __init__(
        self,
        model_name: str,
        pretrained: str | None,
        batch_size: int,
        threads: int = 0,
        workers_per_machine: int = 1,
    ) -> None:
        super().__init__()
        self.handler = ClipModelHandler(model_name, pretrained, batch_size, threads, workers_per_machine)
        self.batch_size = batch_size

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        per_bucket = BATCHES_PER_BUCKET * self.batch_size
        n_buckets = beam.pvalue.AsSingleton(
            records
            | "Count" >> beam.combiners.Count.Globally()
            | "Buckets" >> beam.Map(lambda n: max(1, math.ceil(n / per_bucket)))
        )
        return (
            records
            | "Bucket"
            >> beam.Map(
                lambda r, n: (zlib.crc32(f"{r.key}\0{file_and_row(r.source)}".encode()) % n, r), n=n_buckets
            )
            | "GroupBuckets" >> beam.GroupByKey()
            | "Batch" >> beam.FlatMap(_deterministic_batches, batch_size=self.batch_size)
            | "RunInference" >> RunInference(self.handler)
            | "Unwrap" >> beam.Map(lambda result: result.example)
        )


class _ThresholdFn(beam.DoFn):
    def __init__(self, rejection: Callable[[Record, float], Rejection | None]) -> None:
        self.rejection = rejection

    def process(self, record: Record, threshold: float) -> Iterator:
        rej = self.rejection(record, threshold)
        yield record if rej is None else _rejected(rej)


class _BinCountsFn(beam.CombineFn):
    """Score bin indices -> counts per bin (SCORE_BINS + 1 for NaN); partial sums per worker."""

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(SCORE_BINS + 1, dtype=np.int64)

    def add_input(self, acc: np.ndarray, b: int) -> np.ndarray:
        acc[b] += 1
        return acc

    def merge_accumulators(self, accs: Iterable[np.ndarray]) -> np.ndarray:
        return np.sum(list(accs), axis=0)

    def extract_output(self, acc: np.ndarray) -> np.ndarray:
        return acc


class ClipScoreFilter(beam.PTransform):
    """cosine(image, caption) >= threshold, or keep the top X% (threshold = that percentile of the scores of
    `ranked`, a pool's every decoded row when given, else of the records reaching this filter).

    Besides kept and rejected, `THRESHOLD` is the threshold it applied (one element; none when off).
    """

    def __init__(self, config: ClipScoreConfig, ranked: beam.PCollection | None = None) -> None:
        super().__init__()
        self.config = config
        self.ranked = ranked

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg = self.config
        if cfg.mode == "off":
            no_threshold = records.pipeline | "ClipScoreNoThreshold" >> beam.Create([])
            return {**_passthrough(records, "ClipScore"), THRESHOLD: no_threshold}
        if cfg.mode == "percentile":
            top = cfg.keep_top_percent
            # Exact and distributed: a histogram combiner finds the bin holding the percentile, then
            # only the scores of that one 0.001-wide bin travel to one worker to pick the exact value.
            ranked = records if self.ranked is None else self.ranked
            scores = ranked | "Scores" >> beam.Map(lambda r: float(r.clip_score))
            target = beam.pvalue.AsSingleton(
                scores
                | "Bins" >> beam.Map(score_bin)
                | "Histogram" >> beam.CombineGlobally(_BinCountsFn())
                | "TargetBin" >> beam.Map(percentile_bin, keep_top_percent=top)
            )
            threshold = (
                scores
                | "InTargetBin" >> beam.Filter(lambda s, t: t is not None and score_bin(s) == t[0], t=target)
                | "BinScores" >> beam.combiners.ToList()
                | "Percentile" >> beam.Map(threshold_in_bin, target=target)
            )
        else:
            threshold = records.pipeline | "Threshold" >> beam.Create([cfg.threshold])
        out = records | "Filter" >> beam.ParDo(
            _ThresholdFn(clip_score_rejection), beam.pvalue.AsSingleton(threshold)
        ).with_outputs(REJECTED, main=KEPT)
        return {**_outputs(out[KEPT], out[REJECTED]), THRESHOLD: threshold}


class NsfwFilter(beam.PTransform):
    """Scores every record with Open-NSFW (RunInference, onnxruntime) and rejects P(NSFW) >= threshold."""

    def __init__(self, config: NsfwConfig, workers_per_machine: int = 1) -> None:
        super().__init__()
        self.config = config
        self.workers_per_machine = workers_per_machine

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        if not self.config.enabled:
            return _passthrough(records, "Nsfw")
        threshold = beam.pvalue.AsSingleton(
            records.pipeline | "Threshold" >> beam.Create([self.config.threshold])
        )
        scored = (
            records
            | "RunInference"
            >> RunInference(
                NsfwModelHandler(self.config.batch_size, self.config.threads, self.workers_per_machine)
            )
            | "Unwrap" >> beam.Map(lambda result: result.example)
        )
        out = scored | "Filter" >> beam.ParDo(_ThresholdFn(nsfw_rejection), threshold).with_outputs(
            REJECTED, main=KEPT
        )
        return _outputs(out[KEPT], out[REJECTED])
