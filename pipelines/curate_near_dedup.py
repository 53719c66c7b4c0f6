"""pHash near dedup as Beam transforms: banded LSH buckets -> exact links -> components -> the keep rule
per component (`curation/near_dedup_bands.py`); no worker holds every hash."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from canvas.curation import records as stage
from canvas.curation.best_copy import copy_quality
from canvas.curation.near_dedup import HashItem, NearDedupConfig, find_near_duplicates
from canvas.curation.near_dedup_bands import UnionFind, band_members, links
from canvas.curation.records import Record, Rejection
from canvas.pipelines.curate_stages import KEPT, REJECTED, _outputs, _passthrough, _rejected, _with_thumbnail


def _near_decisions(
    items: list[HashItem], config: NearDedupConfig
) -> Iterator[tuple[str, tuple[str, int, str, str]]]:
    for d in find_near_duplicates(
        items,
        config.hamming_radius,
        config.keep,
        config.query_batch,
        crop_radius=config.crop_radius,
        crop_scales=tuple(config.crop_scales),
    ):
        yield d.uid, (d.kept, d.distance, d.why, d.match)


def _hash_item(r: Record) -> HashItem:
    # No CLIP score yet: near dedup runs before the CLIP stage.
    quality = copy_quality(r, with_clip_score=False)
    return HashItem(r.key, r.phash, r.width * r.height, r.source, quality, r.crop_phashes)


class _ApplyDecisionFn(beam.DoFn):
    """Joins a record with the dedup decision about it (if any): kept, or rejected naming the survivor."""

    def __init__(self, stage_name: str, radius: int, thumbnail_px: int) -> None:
        self.stage_name = stage_name
        self.radius = radius
        self.thumbnail_px = thumbnail_px

    def process(self, element: tuple[str, dict[str, list]]) -> Iterator:
        _, joined = element
        for record in joined["record"]:
            decisions = joined["decision"]
            if not decisions:
                yield record
                continue
            kept, distance, why, match = decisions[0]
            rej = Rejection(
                key=record.key,
                stage=self.stage_name,
                reason=f"near duplicate of {kept}: {match}; kept {kept}: {why}",
                source=record.source,
                duplicate_of=kept,
                score=float(distance),
            )
            yield _rejected(_with_thumbnail(rej, record, self.thumbnail_px))


class _ComponentsFn(beam.CombineFn):
    """(uid, root) links -> connected components, merged per worker first (combiner lifting).

    Only records that have a near duplicate reach it, as uid strings, never the records themselves.
    """

    def create_accumulator(self) -> UnionFind:
        return UnionFind()

    def add_input(self, acc: UnionFind, link: tuple[str, str]) -> UnionFind:
        acc.union(*link)
        return acc

    def merge_accumulators(self, accs: Iterable[UnionFind]) -> UnionFind:
        accs = list(accs)
        for other in accs[1:]:
            accs[0].merge(other)
        return accs[0]

    def extract_output(self, acc: UnionFind) -> list[tuple[str, str]]:
        links = acc.links()
        return links + sorted({(root, root) for _, root in links})


def _links(
    bucket: tuple[tuple[int, int], Iterable[tuple]], radius: int, crop_radius: int
) -> list[tuple[str, str]]:
    members = list(bucket[1])
    Metrics.distribution("curate", "near_dedup_bucket_size").update(len(members))
    return links(bucket[0], members, radius, crop_radius)


def _component_decisions(
    element: tuple[str, Iterable[HashItem]], config: NearDedupConfig
) -> Iterator[tuple[str, tuple[str, int, str]]]:
    items = sorted(element[1], key=lambda it: it.uid)
    yield from _near_decisions(items, config)


class NearDedup(beam.PTransform):
    """pHash near-duplicates by banded LSH buckets (`curation/near_dedup_bands.py`): no worker holds all.

    Hashes -> (band, value) buckets -> exact within-radius links per bucket -> connected components
    (a combiner over the uids that have a near duplicate) -> today's keep rule per component. Decisions
    join back to the records by their source (unique per input row).
    """

    def __init__(self, config: NearDedupConfig, thumbnail_px: int) -> None:
        super().__init__()
        self.config = config
        self.thumbnail_px = thumbnail_px

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        if not self.config.enabled:
            return _passthrough(records, "NearDedup")
        radius, crop_radius = self.config.hamming_radius, self.config.crop_radius
        crop_keys = crop_radius if self.config.crop_scales else None  # None: no crop key space
        items = records | "Hashes" >> beam.Map(_hash_item)
        members = (
            items
            # Whole-hash bands, plus the crop key space for records with central-region hashes.
            | "Bands" >> beam.FlatMap(band_members, radius=radius, crop_radius=crop_keys)
            | "GroupBands" >> beam.GroupByKey()
            | "Links" >> beam.FlatMap(_links, radius=radius, crop_radius=crop_radius)
            | "Components" >> beam.CombineGlobally(_ComponentsFn())
            | "Members" >> beam.FlatMap(lambda links: links)
        )
        decisions = (
            {"item": items | "ByUid" >> beam.Map(lambda it: (it.uid, it)), "root": members}
            | "JoinComponents" >> beam.CoGroupByKey()
            | "ByComponent"
            >> beam.FlatMap(
                lambda kv: [(kv[1]["root"][0], it) for it in kv[1]["item"]] if kv[1]["root"] else []
            )
            | "GroupComponents" >> beam.GroupByKey()
            | "Resolve" >> beam.FlatMap(_component_decisions, config=self.config)
        )
        keyed = records | "BySource" >> beam.Map(lambda r: (r.source, r))
        out = (
            {"record": keyed, "decision": decisions}
            | "Join" >> beam.CoGroupByKey()
            | "Apply"
            >> beam.ParDo(_ApplyDecisionFn(stage.NEAR_DEDUP, radius, self.thumbnail_px)).with_outputs(
                REJECTED, main=KEPT
            )
        )
        return _outputs(out[KEPT], out[REJECTED])
