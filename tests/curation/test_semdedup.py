"""SemDeDup blocks: blocked pairwise equals the full matrix, planted duplicates are found, policies decide
which copy survives, k-means is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from canvas.curation.semdedup import assign_clusters, dedup_cluster, fit_kmeans, rank_cluster
from canvas.curation.semdedup.pairwise import max_sim_to_earlier


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_blocked_pairwise_equals_full_matrix() -> None:
    x = _unit(np.random.default_rng(0).normal(size=(300, 16)))
    full = x @ x.T
    expected = np.array([full[:j, j].max() if j else -np.inf for j in range(300)], dtype=np.float32)
    for block_bytes in (4 * 300 * 1, 4 * 300 * 7, 1 << 30):  # 1 column, 7 columns, everything at once
        best = max_sim_to_earlier(x, max_block_bytes=block_bytes)
        np.testing.assert_allclose(best[1:], expected[1:], rtol=1e-5)
        assert best[0] == -np.inf


def _planted(n: int = 200, d: int = 32, n_dups: int = 40, noise: float = 0.01, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = _unit(rng.normal(size=(n, d)))
    dups = _unit(base[:n_dups] + noise * rng.normal(size=(n_dups, d)))
    keys = [f"a{i:04d}" for i in range(n)] + [f"b{i:04d}" for i in range(n_dups)]
    return keys, np.vstack([base, dups])


def test_dedup_cluster_removes_exactly_the_planted_copies_and_names_the_original() -> None:
    keys, x = _planted()
    n = len(keys)
    decisions = dedup_cluster(keys, x, np.zeros(n), np.zeros(n), eps=0.01, policy="smallest_key")
    assert {d.key for d in decisions} == {f"b{i:04d}" for i in range(40)}
    assert all(d.duplicate_of == "a" + d.key[1:] and d.cosine >= 0.99 for d in decisions)


@pytest.mark.parametrize(
    ("policy", "survivor"),
    [("smallest_key", "x"), ("clip_score", "y"), ("semdedup_hard", "y"), ("semdedup_easy", "x")],
)
def test_keep_policy_decides_the_survivor(policy: str, survivor: str) -> None:
    v = _unit(np.array([[1.0, 0.0], [1.0, 0.001]]))
    centroid_sims = np.array([0.9, 0.5])  # y is further from its centroid: "hard"
    clip_scores = np.array([0.1, 0.3])  # y matches its caption better
    decisions = dedup_cluster(["x", "y"], v, centroid_sims, clip_scores, eps=0.01, policy=policy)
    assert len(decisions) == 1 and decisions[0].duplicate_of == survivor


def test_ranking_ties_fall_back_to_key() -> None:
    order = rank_cluster(["c", "a", "b"], np.zeros(3), np.zeros(3), "semdedup_hard")
    assert order.tolist() == [1, 2, 0]


def test_kmeans_is_deterministic_and_assigns_to_nearest() -> None:
    _, x = _planted(n=500, n_dups=0)
    c1 = fit_kmeans(x, 8, niter=10, seed=3)
    c2 = fit_kmeans(x, 8, niter=10, seed=3)
    np.testing.assert_array_equal(c1, c2)
    ids, sims = assign_clusters(x, c1)
    np.testing.assert_array_equal(ids, (x @ c1.T).argmax(axis=1))
    np.testing.assert_allclose(sims, (x @ c1.T).max(axis=1), rtol=1e-5)


def test_small_cluster_duplicate_of_from_the_one_product_equals_the_blocked_path() -> None:
    # Small clusters reuse their one n x n product for duplicate_of; the blocked path (a tiny memory cap)
    # computes it with a second product. Same removals, same survivors named, same cosines.
    keys, x = _planted(n=300, n_dups=60, noise=0.02, seed=3)
    n = len(keys)
    small = dedup_cluster(keys, x, np.zeros(n), np.zeros(n), 0.01, "smallest_key")
    blocked = dedup_cluster(
        keys, x, np.zeros(n), np.zeros(n), 0.01, "smallest_key", max_block_bytes=4 * n * 5
    )
    assert [(d.key, d.duplicate_of) for d in small] == [(d.key, d.duplicate_of) for d in blocked]
    np.testing.assert_allclose([d.cosine for d in small], [d.cosine for d in blocked], atol=1e-6)
    assert len(small) == 60


def test_bound_prefilter_removes_exactly_what_the_full_product_removes() -> None:
    from canvas.curation.semdedup.pairwise import close_pairs, upper_sims

    def removed_by_bound(x: np.ndarray, threshold: float) -> np.ndarray | None:
        pairs = close_pairs(x, threshold)
        return None if pairs is None else np.isin(np.arange(len(x)), pairs[1])

    rng = np.random.default_rng(7)
    topic = _unit(rng.normal(size=(1, 512)))
    base = _unit(topic + 0.06 * rng.normal(size=(400, 512)))  # cosine ~0.6 to each other, like a cluster
    copies = _unit(base[:80] + rng.uniform(0.002, 0.01, (80, 1)) * rng.normal(size=(80, 512)))
    x = np.vstack([base, copies])[rng.permutation(480)]
    _, best = upper_sims(x)
    for eps in (0.001, 0.005, 0.01, 0.02):
        removed = removed_by_bound(x, 1.0 - eps)
        assert removed is not None
        assert (removed == (best >= np.float32(1.0 - eps))).all()
    assert removed_by_bound(x, 0.0) is None  # a loose threshold: every pair passes, the full product runs


def _chained_cluster(n: int = 700, seed: int = 3) -> np.ndarray:
    """A cluster-like set (cosine ~0.6 between rows) with copies, copies of copies (chains: c is close to
    b, b to a, c not to a) and triples, in a random order."""
    rng = np.random.default_rng(seed)
    topic = _unit(rng.normal(size=(1, 512)))
    base = _unit(topic + 0.06 * rng.normal(size=(n, 512)))
    step = 0.0052  # cosine ~0.993 a step: one step is a duplicate at eps 0.01, two steps (~0.986) are not
    b = _unit(base[:60] + step * rng.normal(size=(60, 512)))
    c = _unit(b[:40] + step * rng.normal(size=(40, 512)))
    triples = _unit(base[60:80] + 0.002 * rng.normal(size=(20, 512)))
    return np.vstack([base, b, c, triples])[rng.permutation(n + 120)]


@pytest.mark.parametrize("block_bytes", [4 * 820 * 1, 4 * 820 * 37, 256 * 1024 * 1024])
def test_dedup_cluster_equals_brute_force_with_chains_at_any_block_size(block_bytes: int) -> None:
    """Removed rows and the kept row each one names equal the full matrix's (SemDeDup's rule: a row goes when
    any earlier row, kept or not, is within eps; it names the most similar kept row), whether the bound's
    product runs in 1, 37 or all columns at once, including rows removed only through a removed row."""
    x = _chained_cluster()
    n, eps = len(x), 0.01
    keys = [f"k{i:04d}" for i in range(n)]  # smallest_key: priority = row order
    full = x.astype(np.float64) @ x.T.astype(np.float64)
    earlier = np.triu(np.ones((n, n), dtype=bool), k=1)  # [i, j]: row i comes before row j
    best_earlier = np.where(earlier, full, -np.inf).max(axis=0)
    removed = best_earlier >= 1.0 - eps
    kept = ~removed
    expected = {}
    for r in np.flatnonzero(removed):
        k = np.flatnonzero(kept)[np.argmax(full[r, kept])]
        expected[keys[r]] = (keys[k], full[r, k])
    got = dedup_cluster(keys, x, np.zeros(n), np.zeros(n), eps, "smallest_key", max_block_bytes=block_bytes)
    assert {d.key: d.duplicate_of for d in got} == {k: v[0] for k, v in expected.items()}
    np.testing.assert_allclose([d.cosine for d in got], [expected[d.key][1] for d in got], atol=1e-5)
    via_removed_only = [
        r for r in np.flatnonzero(removed) if full[r, kept].max() < 1.0 - eps
    ]  # the fallback search runs for these
    assert len(expected) > 100 and via_removed_only


def test_kmeans_in_principal_directions_assigns_in_that_space() -> None:
    """fit_model(dims=r): the projection is the sample's top r principal directions (orthonormal), the
    centroids live in that space, and a row's nearest centroid is the nearest of its normalised projection;
    dims=None is plain fit_kmeans."""
    from canvas.curation.semdedup.kmeans import fit_model, nearest_centroids

    rng = np.random.default_rng(4)
    x = _unit(rng.normal(size=(3000, 64)) * np.linspace(4.0, 0.2, 64))  # variance falls along the axes
    model = fit_model(x, 12, niter=10, seed=1, dims=8)
    assert model.projection.shape == (64, 8) and model.centroids.shape == (12, 8)
    np.testing.assert_allclose(model.projection.T @ model.projection, np.eye(8), atol=1e-5)
    assert (np.abs(model.projection[:8]).sum(axis=0) > 0.9).all()  # the high-variance axes come first
    y = x @ model.projection
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    ids, sims = model.nearest(x, 2)
    expected_ids, expected_sims = nearest_centroids(y, model.centroids, 2)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(sims, expected_sims, atol=1e-6)
    assert (sims[:, 0] >= sims[:, 1]).all()
    np.testing.assert_array_equal(
        fit_model(x, 12, niter=10, seed=1).centroids, fit_kmeans(x, 12, niter=10, seed=1)
    )


def test_a_rows_nearest_centroids_do_not_depend_on_the_batch_it_is_searched_in() -> None:
    """The pipeline assigns rows in batches Beam sizes by timing; FAISS's cosines round differently with
    the batch's shape (one row alone takes another code path), so a near-tie row changed cluster from run
    to run. `nearest_centroids_exact`: the same ids and the same cosine bits whatever the batch, the
    ids FAISS finds, cosines within float32 rounding of its, and -1 past the last centroid."""
    from canvas.curation.semdedup.kmeans import nearest_centroids, nearest_centroids_exact

    rng = np.random.default_rng(5)
    x, c = _unit(rng.normal(size=(3000, 96))), _unit(rng.normal(size=(40, 96)))
    whole_ids, whole_sims = nearest_centroids_exact(x, c, 2)
    splits = [(0, 1), (1, 6), (7, 19), (26, 2000), (2026, 974)]
    parts = [nearest_centroids_exact(x[a : a + n], c, 2) for a, n in splits]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole_ids)
    assert np.concatenate([p[1] for p in parts]).tobytes() == whole_sims.tobytes()
    faiss_ids, faiss_sims = nearest_centroids(x, c, 2)
    np.testing.assert_array_equal(whole_ids, faiss_ids)
    np.testing.assert_allclose(whole_sims, faiss_sims, atol=1e-6)
    ids, sims = nearest_centroids_exact(x[:3], c[:1], 2)
    assert (ids[:, 1] == -1).all() and np.isneginf(sims[:, 1]).all() and (ids[:, 0] == 0).all()
