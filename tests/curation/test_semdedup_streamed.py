"""SemDeDup from an .npy on disk: the streamed passes decide exactly what the in-memory blocks decide."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from canvas.curation.semdedup import assign_clusters, dedup_cluster, fit_kmeans
from canvas.curation.semdedup.streamed import assign_to_disk, dedup_clusters, fit_on_sample


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_streamed_semdedup_equals_in_memory_and_reads_in_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=(600, 32)))
    copies = _unit(base[:60] + 0.01 * rng.normal(size=(60, 32)))
    x = np.vstack([base, copies])
    np.save(tmp_path / "emb.npy", x)
    centroids = fit_on_sample(tmp_path / "emb.npy", n_clusters=8, sample=400, seed=0)
    # chunks of 97 rows: the assignment pass never sees the whole array at once
    assignment = assign_to_disk(tmp_path / "emb.npy", centroids, tmp_path / "work", chunk_rows=97)
    streamed = {
        d.key: d.duplicate_of
        for _, decisions in dedup_clusters(tmp_path / "emb.npy", assignment, 0.01, reopen_rows=50)
        for d in decisions
    }
    ids, sims = assign_clusters(x, centroids)
    expected = {}
    for c in range(len(centroids)):
        rows = np.flatnonzero(ids == c)
        keys = [str(r) for r in rows]
        for d in dedup_cluster(keys, x[rows], sims[rows], np.zeros(len(rows)), 0.01, "semdedup_hard"):
            expected[d.key] = d.duplicate_of
    assert streamed == expected
    pairs = {frozenset((k, v)) for k, v in streamed.items()}
    assert pairs == {frozenset((str(i), str(600 + i))) for i in range(60)}  # the planted copies, no others
    np.testing.assert_array_equal(np.load(tmp_path / "work" / "cluster_ids.npy"), ids)
    sample_rows = np.sort(np.random.default_rng(0).choice(660, 400, replace=False))
    np.testing.assert_array_equal(centroids, fit_kmeans(x[sample_rows], 8, seed=0))
