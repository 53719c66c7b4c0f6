"""SemDeDup over embeddings that stay on disk (an `.npy` read through a memory map, float16 or float32).

Three passes, none holding more than a chunk, a sample or one cluster of rows:
1. k-means on a bounded, deterministic sample of rows (`fit_on_sample`),
2. the assignment streamed in chunks of rows; per-row cluster ids and centroid cosines go to `.npy`
   files beside the data, then one stable argsort gives every cluster's row ids (`assign_to_disk`),
3. each cluster's rows are gathered from the memory map and deduplicated (`dedup_clusters`).

The map is reopened every `reopen_rows` rows read: pages of a file mapping count in the resident set
until the mapping goes, so this bounds the peak RSS whatever the file size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from canvas.curation.semdedup.identify import ClusterDecision, dedup_cluster
from canvas.curation.semdedup.kmeans import assign_clusters, fit_kmeans


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

    def cluster_rows(self) -> Iterator[tuple[int, np.ndarray]]:
        order = np.load(self.order, mmap_mode="r")
        bounds = np.load(self.bounds)
        for c in range(len(bounds) - 1):
            yield c, np.asarray(order[bounds[c] : bounds[c + 1]])


def assign_to_disk(
    path: str | Path, centroids: np.ndarray, out: str | Path, chunk_rows: int = 200_000
) -> Assignment:
    """Nearest centroid of every row, chunk by chunk; the per-cluster row ids are written to `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x = open_rows(path)
    n = len(x)
    ids = np.lib.format.open_memmap(out / "cluster_ids.npy", mode="w+", dtype=np.int32, shape=(n,))
    sims = np.lib.format.open_memmap(out / "centroid_sims.npy", mode="w+", dtype=np.float32, shape=(n,))
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        x = open_rows(path)  # a fresh map per chunk: the previous chunk's pages leave the resident set
        ids[start:stop], sims[start:stop] = assign_clusters(
            np.asarray(x[start:stop], dtype=np.float32), centroids
        )
    ids.flush()
    sims.flush()
    # int32 ids and int64 row numbers: 12 bytes a row in memory for the sort, not the embeddings
    order = np.argsort(np.asarray(ids), kind="stable")
    bounds = np.searchsorted(np.asarray(ids)[order], np.arange(len(centroids) + 1))
    del ids
    np.save(out / "order.npy", order)
    np.save(out / "bounds.npy", bounds)
    return Assignment(out / "order.npy", out / "bounds.npy", out / "centroid_sims.npy")


def dedup_clusters(
    path: str | Path,
    assignment: Assignment,
    eps: float,
    policy: str = "semdedup_hard",
    reopen_rows: int = 1_000_000,
) -> Iterator[tuple[np.ndarray, list[ClusterDecision]]]:
    """For each cluster: its row ids (ascending) and the decisions, keys being row numbers as text."""
    x, sims, read = open_rows(path), np.load(assignment.sims, mmap_mode="r"), 0
    for _, rows in assignment.cluster_rows():
        if len(rows) < 2:
            continue
        if read >= reopen_rows:
            x, sims, read = open_rows(path), np.load(assignment.sims, mmap_mode="r"), 0
        rows = np.sort(rows)  # forward reads
        read += len(rows)
        emb = np.asarray(x[rows], dtype=np.float32)
        zero = np.zeros(len(rows), dtype=np.float32)  # no CLIP scores here: the policy must not need them
        keys = [str(int(r)) for r in rows]
        yield rows, dedup_cluster(keys, emb, np.asarray(sims[rows]), zero, eps, policy)
