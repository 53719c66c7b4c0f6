"""SemDeDup from an .npy on disk: the streamed passes decide exactly what the in-memory blocks decide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from canvas.curation.semdedup import assign_clusters, dedup_cluster, fit_kmeans
from canvas.curation.semdedup.streamed import (
    _ranges,
    assign_to_disk,
    dedup_clusters,
    fit_on_sample,
    gather_rows,
)


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
    model = fit_on_sample(tmp_path / "emb.npy", n_clusters=8, sample=400, seed=0)
    centroids = model.centroids
    # chunks of 97 rows: the assignment pass never sees the whole array at once
    assignment = assign_to_disk(
        tmp_path / "emb.npy", model, tmp_path / "work", chunk_rows=97, workers=workers
    )
    clusters = list(dedup_clusters(tmp_path / "emb.npy", assignment, 0.01, workers=workers))
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


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_gather_rows_reads_scattered_rows_in_pieces_and_refuses_a_truncated_file(
    tmp_path: Path, dtype: str
) -> None:
    x = np.random.default_rng(1).normal(size=(1000, 16)).astype(dtype)
    np.save(tmp_path / "emb.npy", x)
    rows = np.sort(np.random.default_rng(2).choice(1000, 123, replace=False))
    got = gather_rows(tmp_path / "emb.npy", rows, piece=7)  # 18 pieces, the last one short
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x[rows].astype(np.float32))
    assert gather_rows(tmp_path / "emb.npy", rows[:0]).shape == (0, 16)
    with open(tmp_path / "emb.npy", "r+b") as handle:  # a copy cut short: the last rows are gone
        handle.truncate((tmp_path / "emb.npy").stat().st_size - 40 * 16 * x.itemsize)
    with pytest.raises(ValueError, match="past the end of the file"):
        gather_rows(tmp_path / "emb.npy", np.array([0, 999]))


@pytest.mark.parametrize("workers", [1, 2])
def test_border_pass_finds_the_copies_a_cluster_border_split(tmp_path: Path, workers: int) -> None:
    """Two centroids (e0, e1) and copy pairs straddling their bisector: the clusters alone cannot see them
    (each copy is in another cluster); the border pass removes one of each pair, naming the other, and
    touches no row the first pass removed or no row far from the border."""
    rng = np.random.default_rng(5)
    d = 16
    e0, e1 = np.eye(d, dtype=np.float32)[0], np.eye(d, dtype=np.float32)[1]
    inside = _unit(np.vstack([e0 + 0.3 * rng.normal(size=(40, d)), e1 + 0.3 * rng.normal(size=(40, d))]))
    inside_copies = _unit(inside[:10] + 0.001 * rng.normal(size=(10, d)))  # same cluster: the first pass
    rest = rng.normal(size=(12, d))
    rest[:, :2] = 0
    base = _unit(e0 + e1 + 0.4 * _unit(rest))
    x = _unit(base + 0.004 * (e0 - e1))  # nearer e0 by a hair
    y = _unit(base - 0.004 * (e0 - e1))  # nearer e1 by a hair; cosine to x ~0.9999
    emb = np.vstack([inside, inside_copies, x, y])
    np.save(tmp_path / "emb.npy", emb)
    from canvas.curation.semdedup.kmeans import KMeansModel
    from canvas.curation.semdedup.streamed import dedup_boundaries

    assignment = assign_to_disk(
        tmp_path / "emb.npy", KMeansModel(np.stack([e0, e1])), tmp_path / "w", workers=workers
    )
    first = {
        int(d.key): int(d.duplicate_of)
        for _, decisions in dedup_clusters(tmp_path / "emb.npy", assignment, 0.01, workers=workers)
        for d in decisions
    }
    # the same-cluster copies only (semdedup_hard keeps the less central of each pair: either one)
    assert {frozenset(p) for p in first.items()} == {frozenset((i, 80 + i)) for i in range(10)}
    removed = np.zeros(len(emb), dtype=bool)
    removed[list(first)] = True
    border = {
        int(d.key): int(d.duplicate_of)
        for _, decisions in dedup_boundaries(
            tmp_path / "emb.npy", assignment, removed, 0.01, margin=0.05, workers=workers
        )
        for d in decisions
    }
    x_rows, y_rows = range(90, 102), range(102, 114)
    assert {frozenset(p) for p in border.items()} == {
        frozenset((a, b)) for a, b in zip(x_rows, y_rows, strict=True)
    }
    assert not (set(border) | set(border.values())) & (set(first) | set(first.values()))
    nothing = dedup_boundaries(tmp_path / "emb.npy", assignment, removed, 0.01, margin=1e-6, workers=workers)
    assert [d for _, decisions in nothing for d in decisions] == []  # no row that near the border
