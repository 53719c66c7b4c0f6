"""Spherical k-means with FAISS on a sample of embeddings, then nearest-centroid assignment of all."""

from __future__ import annotations

import math

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
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    sims, ids = index.search(np.ascontiguousarray(embeddings, dtype=np.float32), 1)
    return ids[:, 0].astype(np.int64), sims[:, 0]
