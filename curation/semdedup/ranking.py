"""Keep policies: the order in which a cluster's items claim the right to survive. First = kept first."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from canvas.curation.best_copy import CopyQuality, best_first

# best: the best copy (most original pixels, least lossy encoding, CLIP score, key: curation/best_copy.py).
# semdedup_hard: SemDeDup's default: keep the item least similar to its centroid (the least prototypical).
# semdedup_easy: keep the most prototypical one. clip_score: keep the best-matching caption.
# smallest_key: keep the smallest key (stable across models: what the sample set's truth expects).
KEEP_POLICIES = ("best", "semdedup_hard", "semdedup_easy", "clip_score", "smallest_key")


def rank_cluster(
    keys: list[str],
    centroid_sims: np.ndarray,
    clip_scores: np.ndarray,
    policy: str,
    qualities: Sequence[CopyQuality] | None = None,
) -> np.ndarray:
    """Indices of a cluster's items in keep-priority order; ties always fall back to the key.

    `best` needs `qualities` (one per item, in the same order as `keys`)."""
    if policy not in KEEP_POLICIES:
        raise ValueError(f"unknown keep policy {policy!r}; known: {', '.join(KEEP_POLICIES)}")
    if policy == "best":
        if qualities is None or len(qualities) != len(keys):
            raise ValueError("keep policy best needs one CopyQuality per item")
        return np.asarray(best_first(qualities), dtype=np.int64)
    by_key = np.argsort(np.asarray(keys, dtype=object), kind="stable")
    if policy == "smallest_key":
        return by_key
    primary = {
        "semdedup_hard": np.asarray(centroid_sims, dtype=np.float64),
        "semdedup_easy": -np.asarray(centroid_sims, dtype=np.float64),
        "clip_score": -np.asarray(clip_scores, dtype=np.float64),
    }[policy]
    # lexsort sorts by the last key first: primary, then the key's rank.
    key_rank = np.empty(len(keys), dtype=np.int64)
    key_rank[by_key] = np.arange(len(keys))
    return np.lexsort((key_rank, primary))
