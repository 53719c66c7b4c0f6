"""SemDeDup's border pass: the copies k-means put in another cluster than their original.

After the within-cluster pass, a survivor whose second-nearest centroid is less than the margin farther
than its own (a "visitor") is compared with every survivor of that second cluster. One group per
cluster holds three roles:

- HOME: a survivor of this cluster that visits nowhere; it can be removed here.
- STAY: a survivor of this cluster that visits another cluster; here it is only compared with (its own
  fate is decided where it visits, so each item gets exactly one decision and no merge is needed).
- VISIT: a survivor of another cluster visiting this one; it is decided here.

Why not the pairs of neighbouring clusters' border rows only (the earlier pass): on a 1M pool of random
directions, 27% of the semantic copies k-means split from their original had a second-nearest centroid
that was not the original's cluster, and the original itself was deep inside its cluster, so no pair
group held both (bench/semdedup_splits.py: 6.2% of the semantic copies missed; this shape 1.8%).

The rule is SemDeDup's own, with one global order (the keep policy): an item is removed when a close
item (cosine >= 1 - eps) ranks ahead of it, and only in a group where it can be removed. Survivors of
one cluster are never close, so every close pair holds a visitor. A pair whose lower-ranked item is a
STAY is left alone here: if the STAY visits the other's cluster, the pair meets there with the roles
swapped and is decided there; if not, it is not removed (a missed duplicate, never a lost picture). So
the top-ranked copy of any set of copies always survives, and every pointer goes up the order (no cycle
for the ledger to follow).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from canvas.curation.arrays import true_cells
from canvas.curation.best_copy import CopyQuality
from canvas.curation.semdedup.identify import ClusterDecision, keep_reason
from canvas.curation.semdedup.ranking import rank_cluster

HOME, STAY, VISIT = 0, 1, 2


def dedup_visits(
    keys: list[str],
    embeddings: np.ndarray,
    roles: np.ndarray,
    centroid_sims: np.ndarray,
    clip_scores: np.ndarray,
    eps: float,
    policy: str,
    qualities: Sequence[CopyQuality] | None = None,
    max_block_bytes: int = 256 * 1024 * 1024,
) -> list[ClusterDecision]:
    """One cluster's border group -> the removed HOME and VISIT items (`ClusterDecision`s, keyed by key).

    `roles`: HOME/STAY/VISIT per item; `centroid_sims`: cosine to its own centroid (what the SemDeDup keep
    policies rank by). Each removed item names the partner that removed it (the most similar one not
    itself removed here, else the most similar one), followed through this group's removals to an item
    kept here or a STAY; its cosine is to the one named.
    """
    roles = np.asarray(roles)
    visitors = np.flatnonzero(roles == VISIT)
    if len(visitors) == 0 or len(keys) < 2:
        return []
    order = rank_cluster(keys, centroid_sims, clip_scores, policy, qualities)
    position = np.empty(len(keys), dtype=np.int64)
    position[order] = np.arange(len(keys))
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    threshold = np.float32(1.0 - eps)
    block = max(1, max_block_bytes // max(4 * len(x), 1))
    found_v, found_j, found_c = [], [], []
    for start in range(0, len(visitors), block):
        rows = visitors[start : start + block]
        sims = x[rows] @ x.T
        sims[np.arange(len(rows)), rows] = -np.inf
        i, j = true_cells(sims >= threshold)
        found_v.append(rows[i])
        found_j.append(j)
        found_c.append(sims[i, j])
    v, j, cosine = np.concatenate(found_v), np.concatenate(found_j), np.concatenate(found_c)
    once = (roles[j] != VISIT) | (v < j)  # a pair of visitors is found from both sides
    v, j, cosine = v[once], j[once], cosine[once]
    loser = np.where(position[v] < position[j], j, v)
    winner = np.where(loser == j, v, j)
    decided = roles[loser] != STAY  # a STAY is decided where it visits
    loser, winner, cosine = loser[decided], winner[decided], cosine[decided]
    if len(loser) == 0:
        return []
    removed = np.zeros(len(keys), dtype=bool)
    removed[loser] = True
    # Per loser: a surviving winner first, then the highest cosine, then the winner's rank.
    pick = np.lexsort((position[winner], -cosine, removed[winner], loser))
    first = np.r_[True, loser[pick][1:] != loser[pick][:-1]]
    beaten_by = {int(loser[k]): int(winner[k]) for k in pick[first]}
    decisions = []
    for lost, won in beaten_by.items():
        # Name the end of the chain inside this group (an item kept here, or a STAY, decided where it
        # visits): the ledger's pointer then needs at most one more hop. Every step goes up the order.
        named = won
        while named in beaten_by:
            named = beaten_by[named]
        why = keep_reason(policy, qualities, lost, named)
        why += "" if named == won else f" (through {keys[won]}, itself removed here)"
        decisions.append(
            ClusterDecision(keys[lost], keys[named], float(x[lost] @ x[named]), why, lost, named)
        )
    return decisions
