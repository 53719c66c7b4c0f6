"""Within-cluster cosine similarities, computed in column blocks so memory stays O(n * block)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SMALL = 512  # clusters up to this size: one n x n product, like the reference, no blocks


@lru_cache(maxsize=64)
def _lower_mask(n: int) -> np.ndarray:
    """(n, n) bool, True on and below the diagonal: what is not an earlier row of a column. Cached: the
    same cluster sizes recur, and building it is a large share of a small cluster's work."""
    mask = np.tri(n, dtype=bool)
    mask.setflags(write=False)
    return mask


def is_small(n: int, max_block_bytes: int) -> bool:
    """Whether a cluster's whole n x n product is computed at once (and kept for `kept_in_upper`)."""
    return n <= SMALL and 4 * n * n <= max_block_bytes


def upper_sims(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x @ x.T with -inf on and below the diagonal, each column's max = the best earlier row's cosine)."""
    if len(x) == 0:
        return np.empty((0, 0), dtype=np.float32), np.empty(0, dtype=np.float32)
    sims = x @ x.T
    np.putmask(sims, _lower_mask(len(x)), -np.inf)
    return sims, sims.max(axis=0)


def kept_in_upper(sims: np.ndarray, kept: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`most_similar_kept` from `upper_sims`' matrix, without a second product: the cosine of rows r and
    j is sims[min(r, j), max(r, j)] (the upper triangle holds every pair once)."""
    kept_idx = np.flatnonzero(kept)
    r, k = rows[:, None], kept_idx[None, :]
    vals = np.where(k < r, sims[k, r], sims[r, k])
    best = vals.argmax(axis=1)  # ties: the first (highest-priority) kept row, as most_similar_kept
    return kept_idx[best], vals[np.arange(len(rows)), best]


def max_sim_to_earlier(embeddings: np.ndarray, max_block_bytes: int = 256 * 1024 * 1024) -> np.ndarray:
    """For rows in priority order: the highest cosine to any earlier row (row 0: -inf).

    `embeddings` are unit vectors (n, d), so the dot product is the cosine. This is SemDeDup's core (one
    product, upper triangle, column max), with the lower triangle set to -inf in place through a cached
    mask instead of a fresh triu copy; larger clusters go in column blocks so memory stays O(n * block).
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(x)
    if is_small(n, max_block_bytes):
        return upper_sims(x)[1]
    best = np.full(n, -np.inf, dtype=np.float32)
    # Column blocks of at most 512: each block multiplies only the rows above it, so the work is about
    # half of the full n x n product (plus n x 512); memory is capped by max_block_bytes.
    block = max(1, min(n, SMALL, max_block_bytes // max(4 * n, 1)))
    for start in range(1, n, block):
        stop = min(n, start + block)
        sims = x[:stop] @ x[start:stop].T  # (stop, block): only earlier rows matter for each column
        # rows >= start + c are not earlier than column c: the lower-left triangle of the block's tail
        tail = sims[start:stop]
        np.putmask(tail, _lower_mask(stop - start), -np.inf)
        best[start:stop] = sims.max(axis=0)
    return best


def most_similar_kept(
    embeddings: np.ndarray, kept: np.ndarray, rows: np.ndarray, max_block_bytes: int = 256 * 1024 * 1024
) -> tuple[np.ndarray, np.ndarray]:
    """For each of `rows`: the kept row with the highest cosine, and that cosine (in row blocks).

    Products against every row, removed ones masked to -inf: no copy of the kept rows (the removed rows
    are few, so the extra columns cost less than copying n x d)."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    gone = ~np.asarray(kept, dtype=bool)
    out_idx = np.empty(len(rows), dtype=np.int64)
    out_sim = np.empty(len(rows), dtype=np.float32)
    block = max(1, max_block_bytes // max(4 * len(x), 1))
    for start in range(0, len(rows), block):
        sims = x[rows[start : start + block]] @ x.T
        sims[:, gone] = -np.inf
        best = sims.argmax(axis=1)  # ties: the first kept row in priority order, as before
        out_idx[start : start + block] = best
        out_sim[start : start + block] = sims[np.arange(len(best)), best]
    return out_idx, out_sim


PREFIX_SHARE = 8  # the prefilter's product uses 1/8 of the dimensions
BOUND_SLACK = 1e-4  # float32 rounding of the bound's parts is ~1e-6: a wide margin, still exact


def removed_by_bound(x: np.ndarray, threshold: float) -> np.ndarray | None:
    """Which rows have an earlier row with cosine >= threshold, from a product over 1/8 of the dimensions.

    Exact, not approximate: for unit vectors split into a prefix P and the rest Q,
    a.b = aP.bP + aQ.bQ <= aP.bP + |aQ||bQ| (Cauchy-Schwarz). Pairs whose bound is below the threshold
    cannot be duplicates; the few that pass are checked with their true cosine. None when too many pairs
    pass (a loose eps): the caller then computes the whole product.
    """
    n, d = x.shape
    p = max(1, d // PREFIX_SHARE)
    if n < 2 or p >= d:
        return None
    # One product gives the bound: [aP, |aQ|] . [bP, |bQ|] = aP.bP + |aQ||bQ|.
    tail = x[:, p:]
    short = np.empty((n, p + 1), dtype=np.float32)
    short[:, :p] = x[:, :p]
    short[:, p] = np.sqrt(np.einsum("ij,ij->i", tail, tail))
    i, j = np.nonzero(short @ short.T >= np.float32(threshold - BOUND_SLACK))
    earlier = i < j  # the diagonal and the mirror image pass too: keep earlier row i < column j
    i, j = i[earlier], j[earlier]
    if len(i) > n * n // 16:
        return None
    removed = np.zeros(n, dtype=bool)
    if len(i):
        exact = np.einsum("ij,ij->i", x[i], x[j])
        removed[j[exact >= np.float32(threshold)]] = True
    return removed
