"""Within-cluster cosine similarities, computed in column blocks so memory stays O(n * block)."""

from __future__ import annotations

import numpy as np


def max_sim_to_earlier(
    embeddings: np.ndarray, max_block_bytes: int = 256 * 1024 * 1024
) -> tuple[np.ndarray, np.ndarray]:
    """For rows in priority order: the highest cosine to any earlier row, and which row it is.

    Row 0 gets (-inf, -1). `embeddings` are unit vectors (n, d), so the dot product is the cosine.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(x)
    best = np.full(n, -np.inf, dtype=np.float32)
    arg = np.full(n, -1, dtype=np.int64)
    # Column blocks of at most 512: each block multiplies only the rows above it, so the work is about
    # half of the full n x n product (plus n x 512); memory is capped by max_block_bytes.
    block = max(1, min(n, 512, max_block_bytes // max(4 * n, 1)))
    for start in range(1, n, block):
        stop = min(n, start + block)
        sims = x[:stop] @ x[start:stop].T  # (stop, block): only earlier rows matter for each column
        rows = np.arange(stop)[:, None]
        cols = np.arange(start, stop)[None, :]
        sims[rows >= cols] = -np.inf
        arg[start:stop] = sims.argmax(axis=0)
        best[start:stop] = sims[arg[start:stop], np.arange(stop - start)]
    return best, arg


def most_similar_kept(
    embeddings: np.ndarray, kept: np.ndarray, rows: np.ndarray, max_block_bytes: int = 256 * 1024 * 1024
) -> tuple[np.ndarray, np.ndarray]:
    """For each of `rows`: the kept row with the highest cosine, and that cosine (in row blocks)."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    kept_x = x[np.flatnonzero(kept)]
    kept_idx = np.flatnonzero(kept)
    out_idx = np.empty(len(rows), dtype=np.int64)
    out_sim = np.empty(len(rows), dtype=np.float32)
    block = max(1, max_block_bytes // max(4 * len(kept_idx), 1))
    for start in range(0, len(rows), block):
        sims = x[rows[start : start + block]] @ kept_x.T
        best = sims.argmax(axis=1)
        out_idx[start : start + block] = kept_idx[best]
        out_sim[start : start + block] = sims[np.arange(len(best)), best]
    return out_idx, out_sim
