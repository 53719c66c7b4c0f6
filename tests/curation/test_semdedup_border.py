"""SemDeDup's border pass (`dedup_visits`) run as the pipeline runs it, on planted copies near borders."""

from __future__ import annotations

import numpy as np
import pytest

from canvas.curation.semdedup import dedup_cluster, fit_kmeans
from canvas.curation.semdedup.border import HOME, STAY, VISIT, dedup_visits
from canvas.curation.semdedup.kmeans import nearest_centroids

EPS, MARGIN = 0.01, 0.05


def _pool(seed: int) -> np.ndarray:
    """Random directions, each with a copy (cosine ~0.997), and a few with two."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(3000, 8))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    copies = base + 0.07 * rng.normal(size=base.shape) / np.sqrt(8)
    twice = base[:50] + 0.05 * rng.normal(size=(50, 8)) / np.sqrt(8)
    x = np.concatenate([base, copies, twice])
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
            removed[int(d.key)] = (int(d.duplicate_of), d.cosine, 1)
    survivor = np.array([i not in removed for i in range(len(x))])
    visits = np.where(survivor & (gap < MARGIN), second, -1)
    for c in range(len(centroids)):
        home = np.flatnonzero(survivor & (first == c))
        visitors = np.flatnonzero(visits == c)
        rows = np.r_[home, visitors]
        roles = np.r_[np.where(visits[home] >= 0, STAY, HOME), np.full(len(visitors), VISIT)]
        decisions = dedup_visits(
            [keys[r] for r in rows], x[rows], roles, first[rows], visits[rows], sims[rows, 0], zero[rows],
            EPS, policy,
        )  # fmt: skip
        for d in decisions:
            r = int(d.key)
            assert r not in removed, f"row {r} decided twice"
            assert roles[list(rows).index(r)] != STAY, "a STAY is decided where it visits, not at home"
            removed[r] = (int(d.duplicate_of), d.cosine, 2)
    return removed, first, visits


@pytest.mark.parametrize("policy", ["smallest_key", "semdedup_hard"])
@pytest.mark.parametrize("seed", [0, 1])
def test_no_two_survivors_are_copies_when_either_visits_the_others_cluster(policy: str, seed: int) -> None:
    x = _pool(seed)
    removed, first, visits = _two_passes(x, policy)
    kept = np.array([i not in removed for i in range(len(x))])
    sims = x @ x.T
    i, j = np.nonzero(np.triu(sims >= 1 - EPS, k=1))
    reachable = (first[i] == first[j]) | (visits[i] == first[j]) | (visits[j] == first[i])
    both_kept = kept[i] & kept[j]
    assert not np.any(both_kept & reachable), "a reachable pair of copies survived"
    split = first[i] != first[j]
    assert np.sum(split & reachable) > 20, "the pool must put copies in neighbouring clusters"
    # Precision: every removed row has a copy; the border pass names it (the first pass names the most
    # similar kept row, which for a row removed through a removed one can be below the threshold).
    np.fill_diagonal(sims, -1.0)
    for r, (partner, cosine, step) in removed.items():
        assert sims[r].max() >= 1 - EPS - 1e-6 and abs(sims[r, partner] - cosine) < 1e-5
        assert step == 1 or sims[r, partner] >= 1 - EPS - 1e-6
        assert removed.get(partner, (None,))[0] != r, f"rows {r} and {partner} removed each other"
    by_border = sum(1 for _, _, p in removed.values() if p == 2)
    assert by_border > 0


def test_a_pair_that_meets_in_both_clusters_loses_exactly_one_and_the_keep_policy_picks_it() -> None:
    # Row 0 lives in cluster 0 and visits 1; row 1 lives in cluster 1 and visits 0: each group sees the pair
    # with one of them unremovable (a STAY), and only the group where the lower-ranked one visits decides.
    x = np.array([[1.0, 0.0, 0.0], [0.999, 0.0447, 0.0]], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    keys, zero = ["a", "b"], np.zeros(2, dtype=np.float32)
    homes, visits = np.array([0, 1]), np.array([1, 0])
    in_cluster_0 = dedup_visits(
        keys, x, np.array([STAY, VISIT]), homes, visits, zero, zero, EPS, "smallest_key"
    )
    in_cluster_1 = dedup_visits(
        keys, x, np.array([VISIT, STAY]), homes, visits, zero, zero, EPS, "smallest_key"
    )
    assert [(d.key, d.duplicate_of) for d in in_cluster_0] == [("b", "a")]
    assert in_cluster_1 == []
    # A STAY that visits elsewhere cannot be removed here: the visitor gives way even though it ranks first.
    elsewhere = dedup_visits(
        keys, x, np.array([VISIT, STAY]), homes, np.array([-1, 7]), zero, zero, EPS, "smallest_key"
    )
    assert [(d.key, d.duplicate_of) for d in elsewhere] == [("a", "b")]
    assert "visits" in elsewhere[0].why
