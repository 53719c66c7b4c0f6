"""Decide, for one cluster, which items are semantic duplicates and which kept item each one copies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from canvas.curation.best_copy import CopyQuality, why_kept
from canvas.curation.semdedup.pairwise import (
    close_pairs,
    is_small,
    kept_in_pairs,
    kept_in_upper,
    max_sim_to_earlier,
    most_similar_kept,
    upper_sims,
)
from canvas.curation.semdedup.ranking import rank_cluster


@dataclass
class SemDedupConfig:
    """Semantic dedup (SemDeDup) on CLIP image embeddings."""

    enabled: bool = field(default=True, metadata={"help": "run semantic dedup"})
    eps: float | str = field(
        default="auto",
        metadata={
            "help": "items with cosine >= 1 - eps inside a cluster are duplicates. auto: the model's calibrated "
            "value (tiny preset 5e-5, measured on the sample set; real CLIP models 0.01, NeMo Curator's default)"
        },
    )
    n_clusters: int | str = field(
        default="auto", metadata={"help": "k-means clusters; auto = sqrt(number of embeddings)"}
    )
    sample_size: int = field(
        default=100_000, metadata={"help": "embeddings k-means is fitted on (a deterministic hash sample)"}
    )
    kmeans_iters: int = field(default=20, metadata={"help": "k-means iterations"})
    keep: str = field(
        default="auto",
        metadata={
            "help": "which item of a duplicate group survives: best (most original pixels, then lossless "
            "ahead of lossy, then more bytes per pixel, then CLIP score, then key) | semdedup_hard (least "
            "like its centroid, SemDeDup's) | semdedup_easy | clip_score (highest) | smallest_key. auto: best"
        },
    )
    seed: int = field(default=0, metadata={"help": "k-means seed"})
    border_margin: float = field(
        default=0.01,
        metadata={
            "help": "border pass: survivors whose nearest centroid is less than this much (cosine) nearer than "
            "their second visit that second cluster and are deduplicated against every survivor there, "
            "catching the copies k-means split between neighbours (curation/semdedup/border.py; 1M-record "
            "pool: recall 0.934 without it); 0 turns it off"
        },
    )
    max_block_bytes: int = field(
        default=256 * 1024 * 1024, metadata={"help": "memory for one block of within-cluster similarities"}
    )


@dataclass(frozen=True)
class ClusterDecision:
    """One removed item: its key, the kept key it duplicates, their cosine, and why that one was kept.
    `row` / `kept_row`: their places in the lists given, which tell apart items that share a key (a pool
    run without exact dedup can hold one uid twice)."""

    key: str
    duplicate_of: str
    cosine: float
    why: str = ""
    row: int = -1
    kept_row: int = -1


def dedup_cluster(
    keys: list[str],
    embeddings: np.ndarray,
    centroid_sims: np.ndarray,
    clip_scores: np.ndarray,
    eps: float,
    policy: str,
    max_block_bytes: int = 256 * 1024 * 1024,
    qualities: Sequence[CopyQuality] | None = None,
) -> list[ClusterDecision]:
    """SemDeDup within one cluster.

    Items are ranked by the keep policy; an item is a duplicate when its cosine to any higher-ranked item
    is >= 1 - eps (SemDeDup's rule). Each removed item names the kept item most similar to it.
    """
    if len(keys) < 2:
        return []
    order = rank_cluster(keys, centroid_sims, clip_scores, policy, qualities)
    ranked = np.asarray(embeddings, dtype=np.float32)[order]
    # An exact Cauchy-Schwarz bound from 1/8 of the dimensions rules out almost every pair, in column blocks
    # (memory O(n * block) at any cluster size); the pairs that pass get their true cosine, and they also
    # name each removed row's most similar kept row. When the bound passes too many pairs (a loose eps):
    # one full product for <= 512 rows (reused for duplicate_of), else column blocks of full products.
    matrix, pairs = None, close_pairs(ranked, 1.0 - eps, max_block_bytes)
    if pairs is not None:
        removed = np.zeros(len(ranked), dtype=bool)
        removed[pairs[1]] = True
    else:
        small = is_small(len(ranked), max_block_bytes)
        matrix, best = upper_sims(ranked) if small else (None, max_sim_to_earlier(ranked, max_block_bytes))
        removed = best >= np.float32(1.0 - eps)
    rows = np.flatnonzero(removed)
    if len(rows) == 0:
        return []
    if matrix is not None:
        kept_rows, sims = kept_in_upper(matrix, ~removed, rows)
    else:
        kept_rows, sims, found = (
            kept_in_pairs(pairs, ~removed, rows)
            if pairs is not None
            else (np.zeros(len(rows), np.int64), np.zeros(len(rows), np.float32), np.zeros(len(rows), bool))
        )
        rest = np.flatnonzero(~found)  # removed through a removed row only: search every kept row
        if len(rest):
            kept_rows[rest], sims[rest] = most_similar_kept(ranked, ~removed, rows[rest], max_block_bytes)
    return [
        ClusterDecision(
            keys[i],
            keys[j],
            float(s),
            keep_reason(policy, qualities, i, j),
            i,
            j,
        )
        for i, j, s in zip(order[rows].tolist(), order[kept_rows].tolist(), sims, strict=True)
    ]


_WHY = {
    "semdedup_hard": "less like its cluster centroid (semdedup_hard)",
    "semdedup_easy": "more like its cluster centroid (semdedup_easy)",
    "clip_score": "higher CLIP score",
    "smallest_key": "smaller key",
}


def keep_reason(policy: str, qualities: Sequence[CopyQuality] | None, removed: int, kept: int) -> str:
    """Why item `kept` ranks ahead of item `removed` under the keep policy (indices into `qualities`)."""
    if policy == "best" and qualities is not None:
        return why_kept(qualities[kept], qualities[removed])
    return _WHY[policy]
