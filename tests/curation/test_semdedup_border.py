"""SemDeDup's border pass (`dedup_visits`) run as the pipeline runs it, on planted copies near borders."""

from __future__ import annotations

import numpy as np
import pytest

from canvas.curation.semdedup import dedup_cluster, fit_kmeans, rank_cluster
from canvas.curation.semdedup.border import HOME, STAY, VISIT, dedup_visits
from canvas.curation.semdedup.kmeans import nearest_centroids

EPS, MARGIN = 0.01, 0.05


def _pool(seed: int) -> np.ndarray:
    """Random directions, each with a copy (cosine ~0.997), a fifth with three (chains of removals)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(3000, 8))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    copies = base + 0.07 * rng.normal(size=base.shape) / np.sqrt(8)
    more = [base[:600] + 0.05 * rng.normal(size=(600, 8)) / np.sqrt(8) for _ in range(2)]
    x = np.concatenate([base, copies, *more])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _two_passes(
    x: np.ndarray, policy: str
) -> tuple[dict[int, tuple[int, float, int]], np.ndarray, np.ndarray]:
    """Both passes as the Beam pipeline runs them -> (removed row -> (partner row, cosine, pass)), first
    cluster per row, the cluster each survivor visits (-1: none)."""
    centroids = fit_kmeans(x, 12, seed=0)
    ids, sims = nearest_centroids(x, centroids, 2)
    first, second, gap = ids[:, 0], ids[:, 1], sims[:, 0] - sims[:, 1]
    keys = [f"{i:05d}" for i in range(len(x))]
    zero = np.zeros(len(x), dtype=np.float32)
    removed: dict[int, tuple[int, float, int]] = {}
    for c in range(len(centroids)):
        rows = np.flatnonzero(first == c)
        for d in dedup_cluster([keys[r] for r in rows], x[rows], sims[rows, 0], zero[rows], EPS, policy):
            removed[int(d.key)] = (int(d.duplicate_of), d.cosine, -1)
    survivor = np.array([i not in removed for i in range(len(x))])
    visits = np.where(survivor & (gap < MARGIN), second, -1)
    for c in range(len(centroids)):
        home = np.flatnonzero(survivor & (first == c))
        visitors = np.flatnonzero(visits == c)
        rows = np.r_[home, visitors]
        roles = np.r_[np.where(visits[home] >= 0, STAY, HOME), np.full(len(visitors), VISIT)]
        decisions = dedup_visits(
            [keys[r] for r in rows], x[rows], roles, sims[rows, 0], zero[rows], EPS, policy
        )
        for d in decisions:
            r = int(d.key)
            assert r not in removed, f"row {r} decided twice"
            assert roles[list(rows).index(r)] != STAY, "a STAY is decided where it visits, not at home"
            removed[r] = (int(d.duplicate_of), d.cosine, c)
    rank = np.empty(len(x), dtype=np.int64)
    rank[rank_cluster(keys, sims[:, 0], zero, policy)] = np.arange(len(x))
    return removed, first, visits, rank


@pytest.mark.parametrize("policy", ["smallest_key", "semdedup_hard"])
@pytest.mark.parametrize("seed", [0, 1])
def test_border_pass_removes_copies_either_visit_reaches_and_never_every_copy(policy: str, seed: int) -> None:
    x = _pool(seed)
    removed, first, visits, rank = _two_passes(x, policy)
    kept = np.array([i not in removed for i in range(len(x))])
    sims = x @ x.T
    i, j = np.nonzero(np.triu(sims >= 1 - EPS, k=1))
    hi, lo = np.where(rank[i] < rank[j], i, j), np.where(rank[i] < rank[j], j, i)
    split = first[hi] != first[lo]
    reached = split & ((visits[hi] == first[lo]) | (visits[lo] == first[hi]))
    # The one pair shape left alone: only the higher-ranked copy's visit reaches it, and the lower-ranked
    # one is decided where it visits (a third cluster). Every other reached pair loses one of its copies.
    left_alone = reached & (visits[lo] >= 0) & (visits[lo] != first[hi])
    assert not np.any(kept[hi] & kept[lo] & reached & ~left_alone), "a reachable pair of copies survived"
    assert np.sum(reached) > 80 and np.sum(kept[hi] & kept[lo] & reached) < 0.1 * np.sum(reached)
    # Nothing lost: every removed row has a copy, names a row with its cosine, and its pointers lead up the
    # order to a kept row (the ledger follows them; a border pointer always goes to a higher rank).
    np.fill_diagonal(sims, -1.0)
    for r, (partner, cosine, group) in removed.items():
        assert sims[r].max() >= 1 - EPS - 1e-6 and abs(sims[r, partner] - cosine) < 1e-5
        assert group < 0 or rank[partner] < rank[r]
        hops, at = 0, partner
        while at in removed and hops < 4:
            at, hops = removed[at][0], hops + 1
        assert at not in removed, f"row {r}'s pointers do not reach a kept row in 4 hops"
    assert sum(1 for _, _, g in removed.values() if g >= 0) > 20


def test_a_pair_that_meets_in_both_clusters_loses_exactly_one_and_the_keep_policy_picks_it() -> None:
    # Row a lives in cluster 0 and visits 1; row b lives in cluster 1 and visits 0: each group sees the pair
    # with one of them a STAY (not removable there), so only the group where b (ranked lower) visits decides.
    x = np.array([[1.0, 0.0, 0.0], [0.999, 0.0447, 0.0]], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    keys, zero = ["a", "b"], np.zeros(2, dtype=np.float32)
    in_cluster_0 = dedup_visits(keys, x, np.array([STAY, VISIT]), zero, zero, EPS, "smallest_key")
    in_cluster_1 = dedup_visits(keys, x, np.array([VISIT, STAY]), zero, zero, EPS, "smallest_key")
    assert [(d.key, d.duplicate_of, d.why) for d in in_cluster_0] == [("b", "a", "smaller key")]
    assert in_cluster_1 == []
    # Only an item ranked ahead removes: a visitor ahead of a HOME removes the HOME.
    home = dedup_visits(keys, x, np.array([VISIT, HOME]), zero, zero, EPS, "smallest_key")
    assert [(d.key, d.duplicate_of) for d in home] == [("b", "a")]


def test_a_removed_item_names_the_copy_its_group_keeps() -> None:
    # c is close to b only, b to a: a (HOME) removes b (visitor), b removes c (visitor): c names a, through b.
    angle = np.radians([0.0, 6.0, 12.0])
    x = np.stack([np.cos(angle), np.sin(angle), np.zeros(3)], axis=1).astype(np.float32)
    zero = np.zeros(3, dtype=np.float32)
    out = dedup_visits(["a", "b", "c"], x, np.array([HOME, VISIT, VISIT]), zero, zero, EPS, "smallest_key")
    assert [(d.key, d.duplicate_of) for d in out] == [("b", "a"), ("c", "a")]
    assert "through b" in out[1].why and abs(out[1].cosine - np.cos(np.radians(12.0))) < 1e-6
