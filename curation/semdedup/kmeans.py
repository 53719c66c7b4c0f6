"""Spherical k-means with FAISS on a sample of embeddings, then nearest-centroid assignment of all."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def auto_n_clusters(n_items: int) -> int:
    """About sqrt(n) clusters: clusters of ~sqrt(n) items keep the within-cluster pairwise work ~n^1.5."""
    return max(1, round(math.sqrt(max(n_items, 1))))


def fit_kmeans(sample: np.ndarray, n_clusters: int, niter: int = 20, seed: int = 0) -> np.ndarray:
    """Fit k-means on unit vectors; returns (k, d) unit-norm centroids. Deterministic for a given sample."""
    import faiss

    sample = np.ascontiguousarray(sample, dtype=np.float32)
    k = max(1, min(n_clusters, len(sample)))
    if k == 1:
        centroid = sample.mean(axis=0, keepdims=True)
        return centroid / max(float(np.linalg.norm(centroid)), 1e-12)
    kmeans = faiss.Kmeans(
        sample.shape[1],
        k,
        niter=niter,
        seed=seed,
        spherical=True,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max(256, math.ceil(len(sample) / k)),  # never subsample: the sample is ours
    )
    kmeans.train(sample)
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def assign_clusters(embeddings: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cluster id, cosine to that centroid) for each row; ties go to the lower cluster id."""
    ids, sims = nearest_centroids(embeddings, centroids, 1)
    return ids[:, 0], sims[:, 0]


def nearest_centroids(embeddings: np.ndarray, centroids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) ids and cosines of each row's k nearest centroids, nearest first (one flat product: asking
    for the second nearest costs nothing measurable over the first). Missing ones (k > centroids): -1."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    sims, ids = index.search(np.ascontiguousarray(embeddings, dtype=np.float32), k)
    return ids.astype(np.int64), sims


def nearest_centroids_exact(
    embeddings: np.ndarray, centroids: np.ndarray, k: int, shortlist: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """`nearest_centroids` whose answer for a row does not depend on which rows are searched with it.

    Why: FAISS computes a batch's cosines with a BLAS product whose rounding depends on the batch's shape
    (and below 20 rows with its own loop), and Beam's `BatchElements` sizes batches by timing. A row nearly
    as near two centroids then went to either from run to run (at 300k: one record in another cluster;
    at 1M: 177,128 vs 177,160 SemDeDup removals). So FAISS only shortlists each row's `shortlist` nearest
    centroids, and their cosines are computed again in float64, row by row (an elementwise product summed
    along the row: the same operations whatever the batch), and ranked (ties: the lower id). The float64
    cosines differ from FAISS's float32 ones by ~1e-7. Only a row whose k-th and (shortlist+1)-th nearest
    centroids lie within float32 rounding of each other could still get a shortlist that depends on the
    batch; with shortlist 4 and k 2 that is two further near-ties, not seen on the bench pools."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    ids, _ = nearest_centroids(x, c, min(max(k, shortlist), len(c)))
    found = ids >= 0
    x64, c64, safe = x.astype(np.float64), c.astype(np.float64), np.where(found, ids, 0)
    # one candidate column at a time: 5x faster than one (n, shortlist, d) product (no big gather)
    sims = np.stack([np.einsum("nd,nd->n", x64, c64[safe[:, j]]) for j in range(ids.shape[1])], axis=1)
    sims[~found] = -np.inf
    order = np.lexsort((ids, -sims), axis=-1)[:, :k]  # descending cosine, then ascending id
    ids, sims = np.take_along_axis(ids, order, 1), np.take_along_axis(sims, order, 1)
    if ids.shape[1] < k:  # fewer centroids than k: missing ones are -1, as FAISS reports them
        pad = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=-np.inf)
    return ids.astype(np.int64), sims


def fit_projection(sample: np.ndarray, dims: int) -> np.ndarray:
    """(d, dims): the sample's top `dims` principal directions (uncentred, so the direction the embeddings
    share stays: the clustering is spherical). Deterministic up to the sign of each direction."""
    x = np.ascontiguousarray(sample, dtype=np.float32)
    gram = np.zeros((x.shape[1], x.shape[1]), dtype=np.float64)
    for start in range(0, len(x), 65536):  # x^T x in float64 a block at a time: d x d memory, not n x d
        block = x[start : start + 65536].astype(np.float64)
        gram += block.T @ block
    _, vectors = np.linalg.eigh(gram)  # ascending eigenvalues: the last columns are the top directions
    return np.ascontiguousarray(vectors[:, ::-1][:, :dims], dtype=np.float32)


@dataclass(frozen=True)
class KMeansModel:
    """Spherical k-means centroids, in the embeddings' own space (projection None) or in a lower-dimensional
    one: rows are multiplied by `projection` (d, r) and normalised before the centroids see them.

    Why a projection: assigning every row costs n x k x d products; at 10M x 512 with k = 3162 that was
    194 s of SemDeDup's 316 s from disk on 2 cores. In r = d/4 dimensions it is 4x cheaper. The clusters
    are then those of a k-means in the projected space (a coarser view: the within-cluster cosines, which
    decide duplicates, are still computed on the full embeddings); copies split by a cluster border are
    what `dedup_boundaries` recovers."""

    centroids: np.ndarray  # (k, r)
    projection: np.ndarray | None = None  # (d, r)

    def __len__(self) -> int:
        return len(self.centroids)

    def embed(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        if self.projection is None:
            return x
        y = x @ self.projection
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)

    def nearest(self, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """`nearest_centroids` of the rows in the model's space."""
        return nearest_centroids(self.embed(embeddings), self.centroids, k)


def fit_model(
    sample: np.ndarray, n_clusters: int, niter: int = 20, seed: int = 0, dims: int | None = None
) -> KMeansModel:
    """`fit_kmeans` on the sample, in its own space (dims None) or its top `dims` principal directions."""
    if dims is None:
        return KMeansModel(fit_kmeans(sample, n_clusters, niter=niter, seed=seed))
    model = KMeansModel(np.zeros((0, dims), np.float32), fit_projection(sample, dims))
    return KMeansModel(fit_kmeans(model.embed(sample), n_clusters, niter=niter, seed=seed), model.projection)
