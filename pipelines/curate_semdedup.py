"""SemDeDup as Beam transforms, in NeMo Curator's steps: k-means on a sample -> assign every embedding ->
GroupByKey on the cluster -> within-cluster duplicates -> the border pass (survivors grouped by cluster
again, with the survivors of other clusters that lie near its centroid: `curation/semdedup/border.py`)
-> join decisions back to the records.

Only (source, key, embedding, score) travel through the clustering; the records (with their images) are
joined back by source. Records without images travel themselves and skip the join (`carry_records`). A
worker holds one cluster at a time: memory is bounded by the largest cluster.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from canvas.curation import records as stage
from canvas.curation.best_copy import CopyQuality, copy_quality
from canvas.curation.embedding_rows import EmbeddingRows
from canvas.curation.records import CompactPickle, Record, Rejection, file_and_row, unit_embedding
from canvas.curation.semdedup import (
    SemDedupConfig,
    auto_n_clusters,
    dedup_cluster,
    fit_kmeans,
)
from canvas.curation.semdedup.border import HOME, STAY, VISIT, dedup_visits
from canvas.curation.semdedup.kmeans import nearest_centroids_exact
from canvas.pipelines.curate_stages import KEPT, REJECTED, _outputs, _passthrough, _rejected, _with_thumbnail

BORDER = "border"  # survivors on to the border pass, keyed by the cluster whose group they join


@dataclass(frozen=True)
class SemItem(CompactPickle):
    ARRAYS = ("embedding",)

    uid: str
    key: str
    embedding: np.ndarray
    clip_score: float
    quality: CopyQuality  # what keep policy `best` ranks by


def _sem_item(r: Record) -> SemItem:
    # The embedding as the record holds it (a pool's float16 is half the bytes of the float32 unit vector
    # every use makes of it with `unit_embedding`, bit-equal): SemItems wait in groupings at pool scale.
    return SemItem(r.source, r.key, r.embedding, float(r.clip_score), copy_quality(r))


def _item(member: Record | SemItem) -> SemItem:
    """What the clustering reads, from either kind of member (see `SemanticDedup.carry_records`)."""
    return _sem_item(member) if isinstance(member, Record) else member


def _uid(member: Record | SemItem) -> str:
    return member.source if isinstance(member, Record) else member.uid


def _unit_rows(members: list[Record | SemItem], rows: EmbeddingRows | None) -> np.ndarray:
    """(n, d) float32 unit embeddings of the members: carried by each, or read again from the pool's files
    by the records' ordinals (`rows`; then the members are Records without them)."""
    if rows is None:
        return np.stack([unit_embedding(m.embedding) for m in members])
    return rows.unit([m.ordinal for m in members])


def _sample_rank(member: Record | SemItem) -> bytes:
    """A hash of the key and the row's place in its file, not of its position in the run nor of where the
    pool lives: the same records are sampled whatever the file layout, and a pool moved or mounted
    elsewhere gets the same sample, centroids and removals. (The full path was hashed before: 1M-record
    runs of one pool from two folders removed 177,194 and 177,200 rows.)"""
    return hashlib.blake2b(f"{member.key}\0{file_and_row(_uid(member))}".encode(), digest_size=8).digest()


def _sample_candidate(member: Record | SemItem, n_total: int, size: int) -> bool:
    """Whether a member's rank is in the top share of ranks that holds the `size` largest with room to
    spare: size + 6 sqrt(size) + 64 expected, so fewer than `size` pass with probability ~1e-9 (the sample
    is then all that passed). Why: Top.Of keeps up to `size` per bundle before its grouping, so with
    bundles smaller than the sample (one pool shard is ~25k rows, the sample 100k) every member went into
    that grouping, twice materialised. Filtered first, the same top `size` reach it and little else."""
    spare = size + 6.0 * math.sqrt(size) + 64.0
    if spare >= n_total:
        return True
    rank = int.from_bytes(_sample_rank(member), "big")
    return rank >= (1.0 - spare / n_total) * 2.0**64


def _fit(
    sample: list[Record | SemItem], n_total: int, config: SemDedupConfig, rows: EmbeddingRows | None = None
) -> np.ndarray:
    ordered = sorted(sample, key=lambda m: (m.key, _uid(m)))
    k = auto_n_clusters(n_total) if config.n_clusters == "auto" else int(config.n_clusters)
    if not ordered:
        return np.zeros((1, 1), dtype=np.float32)
    return fit_kmeans(_unit_rows(ordered, rows), k, niter=config.kmeans_iters, seed=config.seed)


def _assign(
    batch: list[Record | SemItem], centroids: np.ndarray, rows: EmbeddingRows | None = None
) -> Iterator[tuple[int, tuple]]:
    """(nearest centroid, (member, cosine to it, second-nearest centroid or -1, how much nearer the first
    is)) per member."""
    x = _unit_rows(batch, rows)
    ids, sims = nearest_centroids_exact(x, centroids, 2)  # the same answer whatever the batch
    for member, (cid, second), (sim, sim2) in zip(batch, ids.tolist(), sims.tolist(), strict=True):
        yield cid, (member, sim, second, sim - sim2 if second >= 0 else math.inf)


def _apply(
    record: Record, cluster_id: int, decision: tuple | None, eps: float, thumbnail_px: int
) -> Iterator:
    """The record with its cluster, or its semantic-duplicate rejection. `decision`: (kept key, cosine,
    why it was kept, where: None for within its cluster, else the clusters of the border pass)."""
    record = dataclasses.replace(record, cluster_id=cluster_id)
    if decision is None:
        yield record
        return
    kept, cosine, why, border = decision
    where = f"in cluster {cluster_id}" if border is None else f"across the border of clusters {border}"
    rej = Rejection(
        key=record.key,
        stage=stage.SEMANTIC_DEDUP,
        reason=f"semantic duplicate of {kept} {where}: cosine {cosine:.6f} >= 1 - eps "
        f"({1 - eps:.6f}); kept {kept}: {why}",
        source=record.source,
        duplicate_of=kept,
        score=cosine,
        clip_score=record.clip_score,
        nsfw_score=record.nsfw_score,
        cluster_id=cluster_id,
    )
    yield _rejected(_with_thumbnail(rej, record, thumbnail_px))


def _by_key_and_uid(entry: tuple) -> tuple[str, str]:
    return entry[0].key, entry[0].uid


def _decide(group: list[tuple[SemItem, float]], x: np.ndarray, config: SemDedupConfig) -> dict[int, tuple]:
    """dedup_cluster over (item, cosine to its own centroid) pairs with their unit embeddings `x` -> place in
    `group` -> (kept key, cosine, why). By place, not key: two members may share a key (a pool's repeated
    uid with exact dedup off), and one of them is kept."""
    decisions = dedup_cluster(
        [it.key for it, _ in group],
        x,
        np.array([s for _, s in group], dtype=np.float32),
        np.array([it.clip_score for it, _ in group], dtype=np.float32),
        float(config.eps),
        config.keep,
        config.max_block_bytes,
        [it.quality for it, _ in group],
    )
    return {d.row: (d.duplicate_of, d.cosine, d.why) for d in decisions}


class _DecisionsFn(beam.DoFn):
    """What both passes emit per member: (uid, (cluster id, decision)) to join back or, when the members are
    the records themselves, the kept record or its rejection."""

    def __init__(
        self, config: SemDedupConfig, thumbnail_px: int = 0, rows: EmbeddingRows | None = None
    ) -> None:
        self.config = config
        self.thumbnail_px = thumbnail_px
        self.rows = rows  # the pool's embedding files, when members are Records without their embeddings

    def _emit(
        self, member: Record | SemItem, item: SemItem, cluster_id: int, decision: tuple | None
    ) -> Iterator:
        if isinstance(member, Record):
            yield from _apply(member, cluster_id, decision, float(self.config.eps), self.thumbnail_px)
        else:
            yield item.uid, (cluster_id, decision)


class _DedupClusterFn(_DecisionsFn):
    """One cluster -> each member's decision (`_DecisionsFn`), rejections at once. With a border margin,
    the survivors go on to the BORDER output keyed by cluster, for `_DedupBorderFn`: each one to its own
    cluster's group (HOME), and one within `border_margin` of its second-nearest centroid also to that
    cluster's group (VISIT, decided there) while its item stays home to be compared with (STAY)."""

    def process(self, element: tuple[int, Iterable[tuple]]) -> Iterator:
        cluster_id, members = element
        members = sorted(((_item(m), s, nb, mg, m) for m, s, nb, mg in members), key=_by_key_and_uid)
        Metrics.distribution("curate", "semdedup_cluster_size").update(len(members))
        x = _unit_rows([m for _, _, _, _, m in members], self.rows)
        by_row = _decide([(it, s) for it, s, _, _, _ in members], x, self.config)
        margin = float(self.config.border_margin)
        for row, (item, sim, second, gap, member) in enumerate(members):
            d = by_row.get(row)
            if d is not None or margin <= 0:
                yield from self._emit(member, item, cluster_id, None if d is None else (*d, None))
            elif second >= 0 and gap < margin:
                yield beam.pvalue.TaggedOutput(BORDER, (second, (VISIT, member, sim, cluster_id)))
                # the item, or the record where it holds no embedding (no larger then, and it has the ordinal)
                stay = item if self.rows is None else member
                yield beam.pvalue.TaggedOutput(BORDER, (cluster_id, (STAY, stay, sim, cluster_id)))
            else:
                yield beam.pvalue.TaggedOutput(BORDER, (cluster_id, (HOME, member, sim, cluster_id)))


class _DedupBorderFn(_DecisionsFn):
    """One cluster's survivors with the survivors of other clusters visiting it -> a decision for each
    HOME and VISIT member (`dedup_visits`: same rule and keep policy, cosines to their own centroids),
    each member keeping its own cluster. STAY members are only compared with: their own visit decides them.
    """

    def process(self, element: tuple[int, Iterable[tuple]]) -> Iterator:
        cluster_id, entries = element
        entries = sorted(
            ((_item(m), role, s, home, m) for role, m, s, home in entries), key=_by_key_and_uid
        )  # home: each member's own cluster (a VISIT's is another)
        roles = np.array([role for _, role, _, _, _ in entries], dtype=np.int8)
        Metrics.counter("curate", "semdedup_border_visitors").inc(int(np.sum(roles == VISIT)))
        items = [it for it, _, _, _, _ in entries]
        by_row = {}
        if np.any(roles == VISIT):
            cfg = self.config
            decisions = dedup_visits(
                [it.key for it in items],
                _unit_rows([m for _, _, _, _, m in entries], self.rows),
                roles,
                np.array([s for _, _, s, _, _ in entries], dtype=np.float32),
                np.array([it.clip_score for it in items], dtype=np.float32),
                float(cfg.eps),
                cfg.keep,
                [it.quality for it in items],
                cfg.max_block_bytes,
            )
            by_row = {d.row: d for d in decisions}  # by place: members may share a key (see `_decide`)
        for row, (item, role, _, home, member) in enumerate(entries):
            if role == STAY:
                continue
            d = by_row.get(row)
            if d is None:
                yield from self._emit(member, item, home, None)
                continue
            pair = sorted({home, cluster_id, entries[d.kept_row][3]})
            where = " and ".join(map(str, pair))
            yield from self._emit(member, item, home, (d.duplicate_of, d.cosine, d.why, where))


class _ApplySemanticFn(beam.DoFn):
    def __init__(self, eps: float, thumbnail_px: int) -> None:
        self.eps = eps
        self.thumbnail_px = thumbnail_px

    def process(self, element: tuple[str, dict[str, list]]) -> Iterator:
        _, joined = element
        for record in joined["record"]:
            cluster_id, decision = joined["decision"][0]
            yield from _apply(record, cluster_id, decision, self.eps, self.thumbnail_px)


class SemanticDedup(beam.PTransform):
    """Records with embeddings -> kept records (with `cluster_id`) and semantic-duplicate rejections.

    `carry_records`: the records themselves travel through the sample, the assignment and the grouping by
    cluster, and the decisions are applied in the cluster step. Right for records without images (a pool
    of precomputed embeddings), which are no larger than the SemItem that would stand for them: it saves
    the join back by source, whose CoGroupByKey holds every record twice (its Flatten and its
    GroupByKey; on the in-process DirectRunner, until the run ends). With images, only SemItems travel
    (a worker then holds one cluster's embeddings, not its pictures) and the join brings the records back.

    `rows` (with `carry_records`): the records hold no embedding, and each step reads the rows it needs
    from the pool's files by the records' ordinals (`clip.precomputed_rows`).
    """

    def __init__(
        self,
        config: SemDedupConfig,
        thumbnail_px: int,
        carry_records: bool = False,
        rows: EmbeddingRows | None = None,
    ) -> None:
        super().__init__()
        if rows is not None and not carry_records:
            raise ValueError("rows: only when the records themselves travel (a pool without images)")
        self.config = config
        self.thumbnail_px = thumbnail_px
        self.carry_records = carry_records
        self.rows = rows

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg = self.config
        if not cfg.enabled:
            return _passthrough(records, "SemDedup")
        members = records if self.carry_records else records | "Items" >> beam.Map(_sem_item)
        n_total = beam.pvalue.AsSingleton(members | "Count" >> beam.combiners.Count.Globally())
        centroids = beam.pvalue.AsSingleton(
            members
            | "SampleCandidates" >> beam.Filter(_sample_candidate, n_total=n_total, size=cfg.sample_size)
            | "Sample" >> beam.combiners.Top.Of(cfg.sample_size, key=_sample_rank)
            | "KMeans" >> beam.Map(_fit, n_total=n_total, config=cfg, rows=self.rows)
        )
        # Not the members themselves into the assignment: a step that reads the same collection as the
        # sample's filter and waits for the centroids made from it never ran on the FnApiRunner ("watermark-
        # pending bundles did not execute"), with the batching inside the step or with the count, sample and
        # assignment all reading the batches. So the members are materialised twice (as themselves for the
        # filter, which waits for the count, and as batches for the assignment), as the sample's grouping did
        # before the filter bounded it.
        clusters = (
            members
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=4096)
            | "Assign" >> beam.FlatMap(_assign, centroids=centroids, rows=self.rows)
            | "GroupClusters" >> beam.GroupByKey()
        )
        first = clusters | "DedupClusters" >> beam.ParDo(
            _DedupClusterFn(cfg, self.thumbnail_px, self.rows)
        ).with_outputs(BORDER, REJECTED, main=KEPT)
        border = (
            first[BORDER]
            | "GroupBorders" >> beam.GroupByKey()
            | "DedupBorders"
            >> beam.ParDo(_DedupBorderFn(cfg, self.thumbnail_px, self.rows)).with_outputs(REJECTED, main=KEPT)
        )
        if self.carry_records:
            kept = (first[KEPT], border[KEPT]) | "MergeKept" >> beam.Flatten()
            rejected = (first[REJECTED], border[REJECTED]) | "MergeRejected" >> beam.Flatten()
            return _outputs(kept, rejected)
        decisions = (first[KEPT], border[KEPT]) | "MergeDecisions" >> beam.Flatten()
        out = (
            {"record": records | "BySource" >> beam.Map(lambda r: (r.source, r)), "decision": decisions}
            | "Join" >> beam.CoGroupByKey()
            | "Apply"
            >> beam.ParDo(_ApplySemanticFn(float(cfg.eps), self.thumbnail_px)).with_outputs(
                REJECTED, main=KEPT
            )
        )
        return _outputs(out[KEPT], out[REJECTED])
