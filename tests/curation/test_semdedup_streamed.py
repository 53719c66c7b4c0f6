"""SemDeDup from an .npy on disk: the streamed passes decide exactly what the in-memory blocks decide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from canvas.curation.semdedup import assign_clusters, dedup_cluster, fit_kmeans
from canvas.curation.semdedup.streamed import _ranges, assign_to_disk, dedup_clusters, fit_on_sample


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("workers", [1, 2])
def test_streamed_semdedup_equals_in_memory_and_reads_in_chunks(tmp_path: Path, workers: int) -> None:
    """With workers=2 both passes run in two spawned processes: same ids, same decisions, same order."""
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=(600, 32)))
    copies = _unit(base[:60] + 0.01 * rng.normal(size=(60, 32)))
    x = np.vstack([base, copies])
    np.save(tmp_path / "emb.npy", x)
    centroids = fit_on_sample(tmp_path / "emb.npy", n_clusters=8, sample=400, seed=0)
    # chunks of 97 rows: the assignment pass never sees the whole array at once
    assignment = assign_to_disk(
        tmp_path / "emb.npy", centroids, tmp_path / "work", chunk_rows=97, workers=workers
    )
    clusters = list(dedup_clusters(tmp_path / "emb.npy", assignment, 0.01, reopen_rows=50, workers=workers))
    streamed = {d.key: d.duplicate_of for _, decisions in clusters for d in decisions}
    firsts = [int(rows[0]) for rows, _ in clusters]
    ids_on_disk = np.load(tmp_path / "work" / "cluster_ids.npy")
    assert [int(ids_on_disk[r]) for r in firsts] == sorted(
        int(ids_on_disk[r]) for r in firsts
    )  # cluster order
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


def test_ranges_split_work_evenly_and_cover_everything() -> None:
    assert _ranges(np.ones(10), 2) == [(0, 5), (5, 10)]
    assert _ranges(np.array([100.0, 1, 1, 1, 1]), 2) == [(0, 1), (1, 5)]
    assert _ranges(np.ones(3), 8) == [(0, 1), (1, 2), (2, 3)]  # never an empty range
