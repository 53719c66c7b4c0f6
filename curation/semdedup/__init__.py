"""Semantic dedup (SemDeDup, Abbas et al. 2023), split like NeMo Curator's: `kmeans` (fit on a sample,
assign all), `ranking` (which item of a cluster is worth keeping most), `pairwise` (within-cluster
cosine, in blocks so memory is bounded by the largest cluster), `identify` (threshold 1 - eps, and for
every removed item the kept item it duplicates)."""

from canvas.curation.semdedup.identify import ClusterDecision, SemDedupConfig, dedup_cluster
from canvas.curation.semdedup.kmeans import assign_clusters, auto_n_clusters, fit_kmeans
from canvas.curation.semdedup.ranking import KEEP_POLICIES, rank_cluster

__all__ = [
    "KEEP_POLICIES",
    "ClusterDecision",
    "SemDedupConfig",
    "assign_clusters",
    "auto_n_clusters",
    "dedup_cluster",
    "fit_kmeans",
    "rank_cluster",
]
