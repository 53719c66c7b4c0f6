"""SemDeDup over embeddings that stay on disk (an `.npy` read through a memory map, float16 or float32).

Three passes, none holding more than a chunk, a sample or one cluster of rows:
1. k-means on a bounded, deterministic sample of rows (`fit_on_sample`),
2. the assignment streamed in chunks of rows; per-row cluster ids and centroid cosines go to `.npy`
   files beside the data, then one stable argsort gives every cluster's row ids (`assign_to_disk`),
3. each cluster's rows are gathered from the memory map and deduplicated (`dedup_clusters`).

The map is reopened every `reopen_rows` rows read: pages of a file mapping count in the resident set
until the mapping goes, so this bounds the peak RSS whatever the file size.

Passes 2 and 3 take `workers`: that many spawned processes, each opening the map itself, over contiguous
ranges of chunks or clusters (results in the same order, so the decisions are the same as with one). BLAS
and FAISS run one thread per process in both passes: the products are small (a chunk against the
centroids, one cluster), and on a loaded 2-core machine OpenBLAS's threads waiting on each other cost more
than they save (measured: the cluster step at 1M took 27.9 s with 2 BLAS threads, 6.0 s with one).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from canvas.curation.semdedup.identify import ClusterDecision, dedup_cluster
from canvas.curation.semdedup.kmeans import assign_clusters, fit_kmeans


def _one_thread() -> None:
    """Pool initializer: one BLAS and one FAISS thread in this process (see the module's docstring)."""
    import faiss
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    faiss.omp_set_num_threads(1)


def _pool(workers: int) -> multiprocessing.pool.Pool:
    # spawn, not fork: the parent has run FAISS's OpenMP (k-means), which a forked child may deadlock on
    return multiprocessing.get_context("spawn").Pool(workers, initializer=_one_thread)


def _ranges(sizes: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Contiguous index ranges with about equal sums of `sizes` (at most `parts`, none empty)."""
    edges = np.searchsorted(np.cumsum(sizes), np.linspace(0, sizes.sum(), parts + 1)[1:-1]) + 1
    bounds = np.unique(np.concatenate([[0], edges, [len(sizes)]]))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def open_rows(path: str | Path) -> np.ndarray:
    """The `.npy` as a read-only memory map (nothing is read until rows are indexed)."""
    return np.load(path, mmap_mode="r")


def fit_on_sample(
    path: str | Path, n_clusters: int, sample: int, niter: int = 20, seed: int = 0
) -> np.ndarray:
    """Centroids from `sample` rows drawn without replacement (sorted, so the reads go forward)."""
    x = open_rows(path)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(x), min(sample, len(x)), replace=False))
    return fit_kmeans(np.asarray(x[rows], dtype=np.float32), n_clusters, niter=niter, seed=seed)


@dataclass(frozen=True)
class Assignment:
    """Where the assignment pass wrote: rows ordered by cluster, cluster bounds in that order, and each
    row's cosine to its centroid (indexed by row)."""

    order: Path
    bounds: Path
    sims: Path


def _assign_rows(
    path: Path, centroids: np.ndarray, out: Path, start: int, stop: int, chunk_rows: int
) -> None:
    """Rows [start, stop) chunk by chunk into the ids/sims files that `assign_to_disk` created."""
    ids = np.load(out / "cluster_ids.npy", mmap_mode="r+")
    sims = np.load(out / "centroid_sims.npy", mmap_mode="r+")
    for lo in range(start, stop, chunk_rows):
        hi = min(stop, lo + chunk_rows)
        x = open_rows(path)  # a fresh map per chunk: the previous chunk's pages leave the resident set
        ids[lo:hi], sims[lo:hi] = assign_clusters(np.asarray(x[lo:hi], dtype=np.float32), centroids)
    ids.flush()
    sims.flush()


def assign_to_disk(
    path: str | Path, centroids: np.ndarray, out: str | Path, chunk_rows: int = 200_000, workers: int = 1
) -> Assignment:
    """Nearest centroid of every row, chunk by chunk; the per-cluster row ids are written to `out`."""
    path, out = Path(path), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(open_rows(path))
    for name, dtype in (("cluster_ids.npy", np.int32), ("centroid_sims.npy", np.float32)):
        np.lib.format.open_memmap(out / name, mode="w+", dtype=dtype, shape=(n,))  # the workers fill them
    starts = list(range(0, n, chunk_rows))
    if workers <= 1 or len(starts) < 2:
        _assign_rows(path, centroids, out, 0, n, chunk_rows)
    else:
        spans = [
            (starts[a], min(n, starts[b - 1] + chunk_rows)) for a, b in _ranges(np.ones(len(starts)), workers)
        ]
        with _pool(workers) as pool:
            pool.starmap(_assign_rows, [(path, centroids, out, a, b, chunk_rows) for a, b in spans])
    ids = np.load(out / "cluster_ids.npy", mmap_mode="r")
    # int32 ids and int64 row numbers: 12 bytes a row in memory for the sort, not the embeddings
    order = np.argsort(np.asarray(ids), kind="stable")
    bounds = np.searchsorted(np.asarray(ids)[order], np.arange(len(centroids) + 1))
    del ids
    np.save(out / "order.npy", order)
    np.save(out / "bounds.npy", bounds)
    return Assignment(out / "order.npy", out / "bounds.npy", out / "centroid_sims.npy")


def _dedup_range(
    path: Path, assignment: Assignment, eps: float, policy: str, reopen_rows: int, lo: int, hi: int
) -> Iterator[tuple[np.ndarray, list[ClusterDecision]]]:
    """Clusters lo..hi-1 (those of two rows or more) with their decisions."""
    order, bounds = np.load(assignment.order, mmap_mode="r"), np.load(assignment.bounds)
    x, sims, read = open_rows(path), np.load(assignment.sims, mmap_mode="r"), 0
    for c in range(lo, hi):
        if bounds[c + 1] - bounds[c] < 2:
            continue
        if read >= reopen_rows:
            x, sims, read = open_rows(path), np.load(assignment.sims, mmap_mode="r"), 0
        rows = np.sort(order[bounds[c] : bounds[c + 1]])  # forward reads
        read += len(rows)
        emb = np.asarray(x[rows], dtype=np.float32)
        zero = np.zeros(len(rows), dtype=np.float32)  # no CLIP scores here: the policy must not need them
        keys = [str(int(r)) for r in rows]
        yield rows, dedup_cluster(keys, emb, np.asarray(sims[rows]), zero, eps, policy)


def _dedup_part(args: tuple) -> list[tuple[np.ndarray, list[ClusterDecision]]]:
    return list(_dedup_range(*args))


def dedup_clusters(
    path: str | Path,
    assignment: Assignment,
    eps: float,
    policy: str = "semdedup_hard",
    reopen_rows: int = 1_000_000,
    workers: int = 1,
) -> Iterator[tuple[np.ndarray, list[ClusterDecision]]]:
    """For each cluster: its row ids (ascending) and the decisions, keys being row numbers as text.

    Clusters come in cluster order whatever `workers` is; with workers > 1 they are split into contiguous
    ranges of about equal work (a cluster of n rows costs ~n^2), 8 per worker so that one slow range does
    not leave a core idle at the end."""
    from threadpoolctl import threadpool_limits

    path = Path(path)
    sizes = np.diff(np.load(assignment.bounds)).astype(np.float64)
    if workers <= 1:
        with threadpool_limits(1):
            yield from _dedup_range(path, assignment, eps, policy, reopen_rows, 0, len(sizes))
        return
    parts = _ranges(sizes**2 + 512 * sizes, 8 * workers)
    with _pool(workers) as pool:
        args = [(path, assignment, eps, policy, reopen_rows, lo, hi) for lo, hi in parts]
        for part in pool.imap(_dedup_part, args):
            yield from part
