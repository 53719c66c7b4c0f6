"""SemDeDup as Beam transforms, in NeMo Curator's steps: k-means on a sample -> assign every embedding ->
GroupByKey on the cluster -> within-cluster duplicates -> join decisions back to the records.

Only (source, key, embedding, score) travel through the clustering; the records (with their images) are
joined back by source. A worker holds one cluster at a time: memory is bounded by the largest cluster.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from canvas.curation import records as stage
from canvas.curation.best_copy import CopyQuality, copy_quality
from canvas.curation.records import Record, Rejection
from canvas.curation.semdedup import (
    SemDedupConfig,
    assign_clusters,
    auto_n_clusters,
    dedup_cluster,
    fit_kmeans,
)
from canvas.pipelines.curate_stages import KEPT, REJECTED, _outputs, _passthrough, _rejected, _with_thumbnail


@dataclass(frozen=True)
class SemItem:
    uid: str
    key: str
    embedding: np.ndarray
    clip_score: float
    quality: CopyQuality  # what keep policy `best` ranks by


def _sem_item(r: Record) -> SemItem:
    embedding = np.asarray(r.embedding, dtype=np.float32)
    return SemItem(r.source, r.key, embedding, float(r.clip_score), copy_quality(r))


def _sample_rank(item: SemItem) -> bytes:
    # A hash of the key, not its position: the same records are sampled whatever the file layout.
    return hashlib.blake2b(f"{item.key}\0{item.uid}".encode(), digest_size=8).digest()


def _fit(sample: list[SemItem], n_total: int, config: SemDedupConfig) -> np.ndarray:
    ordered = sorted(sample, key=lambda it: (it.key, it.uid))
    k = auto_n_clusters(n_total) if config.n_clusters == "auto" else int(config.n_clusters)
    if not ordered:
        return np.zeros((1, 1), dtype=np.float32)
    x = np.stack([it.embedding for it in ordered]).astype(np.float32)
    return fit_kmeans(x, k, niter=config.kmeans_iters, seed=config.seed)


def _assign(batch: list[SemItem], centroids: np.ndarray) -> Iterator[tuple[int, tuple[SemItem, float]]]:
    ids, sims = assign_clusters(np.stack([it.embedding for it in batch]), centroids)
    for item, cid, sim in zip(batch, ids, sims, strict=True):
        yield int(cid), (item, float(sim))


class _DedupClusterFn(beam.DoFn):
    """One cluster -> (uid, (cluster id, (kept key, cosine) or None)) for each member."""

    def __init__(self, config: SemDedupConfig) -> None:
        self.config = config

    def process(self, element: tuple[int, Iterable[tuple[SemItem, float]]]) -> Iterator:
        cluster_id, members = element
        members = sorted(members, key=lambda m: (m[0].key, m[0].uid))
        Metrics.distribution("curate", "semdedup_cluster_size").update(len(members))
        keys = [m.key for m, _ in members]
        decisions = dedup_cluster(
            keys,
            np.stack([m.embedding for m, _ in members]),
            np.array([s for _, s in members], dtype=np.float32),
            np.array([m.clip_score for m, _ in members], dtype=np.float32),
            float(self.config.eps),
            self.config.keep,
            self.config.max_block_bytes,
            [m.quality for m, _ in members],
        )
        # dedup_cluster reports keys; members with equal keys (possible only without exact dedup) share fate.
        by_key = {d.key: d for d in decisions}
        for member, _ in members:
            d = by_key.get(member.key)
            yield member.uid, (cluster_id, None if d is None else (d.duplicate_of, d.cosine, d.why))


class _ApplySemanticFn(beam.DoFn):
    def __init__(self, eps: float, thumbnail_px: int) -> None:
        self.eps = eps
        self.thumbnail_px = thumbnail_px

    def process(self, element: tuple[str, dict[str, list]]) -> Iterator:
        _, joined = element
        for record in joined["record"]:
            cluster_id, decision = joined["decision"][0]
            record = dataclasses.replace(record, cluster_id=cluster_id)
            if decision is None:
                yield record
                continue
            kept, cosine, why = decision
            rej = Rejection(
                key=record.key,
                stage=stage.SEMANTIC_DEDUP,
                reason=f"semantic duplicate of {kept} in cluster {cluster_id}: cosine {cosine:.6f} >= 1 - eps "
                f"({1 - self.eps:.6f}); kept {kept}: {why}",
                source=record.source,
                duplicate_of=kept,
                score=cosine,
                clip_score=record.clip_score,
                nsfw_score=record.nsfw_score,
                cluster_id=cluster_id,
            )
            yield _rejected(_with_thumbnail(rej, record, self.thumbnail_px))


class SemanticDedup(beam.PTransform):
    """Records with embeddings -> kept records (with `cluster_id`) and semantic-duplicate rejections."""

    def __init__(self, config: SemDedupConfig, thumbnail_px: int) -> None:
        super().__init__()
        self.config = config
        self.thumbnail_px = thumbnail_px

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg = self.config
        if not cfg.enabled:
            return _passthrough(records, "SemDedup")
        items = records | "Items" >> beam.Map(_sem_item)
        n_total = beam.pvalue.AsSingleton(items | "Count" >> beam.combiners.Count.Globally())
        centroids = beam.pvalue.AsSingleton(
            items
            | "Sample" >> beam.combiners.Top.Of(cfg.sample_size, key=_sample_rank)
            | "KMeans" >> beam.Map(_fit, n_total=n_total, config=cfg)
        )
        decisions = (
            items
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=4096)
            | "Assign" >> beam.FlatMap(_assign, centroids=centroids)
            | "GroupClusters" >> beam.GroupByKey()
            | "DedupClusters" >> beam.ParDo(_DedupClusterFn(cfg))
        )
        out = (
            {"record": records | "BySource" >> beam.Map(lambda r: (r.source, r)), "decision": decisions}
            | "Join" >> beam.CoGroupByKey()
            | "Apply"
            >> beam.ParDo(_ApplySemanticFn(float(cfg.eps), self.thumbnail_px)).with_outputs(
                REJECTED, main=KEPT
            )
        )
        return _outputs(out[KEPT], out[REJECTED])
