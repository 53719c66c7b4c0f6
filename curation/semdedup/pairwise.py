"""Within-cluster cosine similarities, computed in column blocks so memory stays O(n * block)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from canvas.curation.arrays import true_cells

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
BOUND_BLOCK = 256  # columns per block of the bound's product (measured: 128-512 all within 10%)


def close_pairs(
    x: np.ndarray, threshold: float, max_block_bytes: int = 256 * 1024 * 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Every pair i < j with cosine >= threshold, as (i, j, cosine), from a bound over 1/8 of the dimensions.

    Exact, not approximate: for unit vectors split into a prefix P and the rest Q,
    a.b = aP.bP + aQ.bQ <= aP.bP + |aQ||bQ| (Cauchy-Schwarz). Pairs whose bound is below the threshold
    cannot be duplicates; the few that pass get their true cosine. The bound's product runs in column
    blocks over the upper triangle only (earlier rows of each column): half the work of the full square,
    and memory O(n * block) whatever the cluster's size. None when too many pairs pass (more than n^2/16,
    a loose threshold): the caller then computes the whole product.
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
    bound = np.float32(threshold - BOUND_SLACK)
    block = max(1, min(BOUND_BLOCK, max_block_bytes // (4 * n)))
    found_i, found_j, passed = [], [], 0
    for start in range(1, n, block):
        stop = min(n, start + block)
        i, j = true_cells(short[:stop] @ short[start:stop].T >= bound)
        j += start
        earlier = i < j  # the block's own square passes its diagonal and mirror image: keep row < column
        i, j = i[earlier], j[earlier]
        passed += len(i)
        if passed > n * n // 16:
            return None
        found_i.append(i)
        found_j.append(j)
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    cosine = np.einsum("ij,ij->i", x[i], x[j]) if len(i) else np.empty(0, dtype=np.float32)
    close = cosine >= np.float32(threshold)
    return i[close], j[close], cosine[close]


def kept_in_pairs(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray], kept: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`most_similar_kept` for the removed `rows` that have a kept row among the close pairs, without a product.

    A kept row with cosine >= threshold to a removed row is always earlier (a later one would have been
    removed by it), so it is in `close_pairs`' output, and the most similar kept row overall is then the
    most similar such pair. Ties go to the earlier kept row, as in `most_similar_kept`; cosines are the
    pairs' own dot products (the same values up to float rounding, ~1e-7, as a product's). Returns
    (kept row, cosine, found) per row; rows not found need `most_similar_kept`."""
    i, j, cosine = pairs
    sel = kept[i]
    i, j, cosine = i[sel], j[sel], cosine[sel]
    order = np.lexsort((i, -cosine, j))  # by column, then the highest cosine, then the earliest row
    i, j, cosine = i[order], j[order], cosine[order]
    first = np.ones(len(j), dtype=bool)
    first[1:] = j[1:] != j[:-1]
    at = {int(c): k for k, c in enumerate(j[first])}
    best_i, best_c = i[first], cosine[first]
    out_idx = np.zeros(len(rows), dtype=np.int64)
    out_sim = np.zeros(len(rows), dtype=np.float32)
    found = np.zeros(len(rows), dtype=bool)
    for k, r in enumerate(rows.tolist()):
        hit = at.get(r)
        if hit is not None:
            out_idx[k], out_sim[k], found[k] = best_i[hit], best_c[hit], True
    return out_idx, out_sim, found
