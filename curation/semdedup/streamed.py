"""SemDeDup over embeddings that stay on disk (an `.npy` read through a memory map, float16 or float32).

Three passes, none holding more than a chunk, a sample or one cluster of rows:
1. k-means on a bounded, deterministic sample of rows (`fit_on_sample`),
2. the assignment streamed in chunks of rows; per-row cluster ids and centroid cosines go to `.npy`
   files beside the data, then one stable argsort gives every cluster's row ids (`assign_to_disk`),
3. each cluster's rows are gathered from the memory map and deduplicated (`dedup_clusters`).

Scattered rows (the sample, a cluster) are read with `pread`, not through the map: pages of a file
mapping count in the resident set until the mapping goes, so this bounds the peak RSS whatever the file
size and the page cache (see `gather_rows`).

Passes 2 and 3 take `workers`: that many spawned processes, each opening the map itself, over contiguous
ranges of chunks or clusters (results in the same order, so the decisions are the same as with one). BLAS
and FAISS run one thread per process in both passes: the products are small (a chunk against the
centroids, one cluster), and on a loaded 2-core machine OpenBLAS's threads waiting on each other cost more
than they save (measured: the cluster step at 1M took 27.9 s with 2 BLAS threads, 6.0 s with one).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from canvas.curation.semdedup.identify import ClusterDecision, dedup_cluster
from canvas.curation.semdedup.kmeans import KMeansModel, fit_model


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


PIECE_ROWS = 4096  # rows read into one buffer by `gather_rows`


def open_rows(path: str | Path) -> np.ndarray:
    """The `.npy` as a read-only memory map (nothing is read until rows are indexed)."""
    return np.load(path, mmap_mode="r")


def gather_rows(path: str | Path, rows: np.ndarray, piece: int = PIECE_ROWS) -> np.ndarray:
    """Rows (ascending) as float32, read with `pread` at their offsets, `piece` rows at a time.

    Not through a memory map: a read fault on a file map maps the pages around it too, and mapped pages
    count in the resident set until the map goes. How many depends on the page cache: with the file hot
    (large folios), one 1 KiB row mapped hundreds of KiB, and two workers gathering clusters at 10M x 512
    float16 held 8.8 GB resident even with a fresh map per 4096 rows; the same run with the cache under
    pressure held 0.7 GB of file pages. `pread` copies just the rows: memory is the result plus one
    piece's buffer, whatever the cache. Measured hot: ~3.3 us a row against ~2 us through a map."""
    with open(path, "rb") as handle:  # the layout from the header, not from a map (it would check the size)
        version = np.lib.format.read_magic(handle)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        (_, width), fortran_order, dtype = read_header(handle)
        offset = handle.tell()
    if fortran_order:
        raise ValueError(
            f"{path}: rows are not contiguous (Fortran order); save it with np.save of a C array"
        )
    if not len(rows):
        return np.empty((0, width), dtype=np.float32)
    row_bytes = width * dtype.itemsize
    out = np.empty((len(rows), width), dtype=np.float32)
    buffer = np.empty((min(piece, len(rows)), width), dtype=dtype)
    raw = memoryview(buffer).cast("B")
    fd = os.open(path, os.O_RDONLY)
    try:
        for start in range(0, len(rows), piece):
            part = rows[start : start + piece].tolist()
            for k, row in enumerate(part):
                if (
                    os.preadv(fd, [raw[k * row_bytes : (k + 1) * row_bytes]], offset + row * row_bytes)
                    != row_bytes
                ):
                    raise ValueError(f"{path}: row {row} is past the end of the file (truncated?)")
            out[start : start + len(part)] = buffer[: len(part)]
    finally:
        os.close(fd)
    return out


def fit_on_sample(
    path: str | Path, n_clusters: int, sample: int, niter: int = 20, seed: int = 0, dims: int | None = None
) -> KMeansModel:
    """k-means on `sample` rows drawn without replacement (sorted, so the reads go forward), in the
    embeddings' space or, with `dims`, in the sample's top principal directions (`KMeansModel`)."""
    n = len(open_rows(path))
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, min(sample, n), replace=False))
    return fit_model(gather_rows(path, rows), n_clusters, niter=niter, seed=seed, dims=dims)


@dataclass(frozen=True)
class Assignment:
    """Where the assignment pass wrote: rows ordered by cluster, cluster bounds in that order, and, indexed
    by row, its cosine to its centroid, its second-nearest centroid and how much nearer the first is."""

    order: Path
    bounds: Path
    sims: Path
    second: Path
    margins: Path


def _assign_rows(path: Path, model: KMeansModel, out: Path, start: int, stop: int, chunk_rows: int) -> None:
    """Rows [start, stop) chunk by chunk into the files that `assign_to_disk` created."""
    files = {name: np.load(out / f"{name}.npy", mmap_mode="r+") for name, _ in _PER_ROW}
    for lo in range(start, stop, chunk_rows):
        hi = min(stop, lo + chunk_rows)
        x = open_rows(path)  # a fresh map per chunk: the previous chunk's pages leave the resident set
        ids, sims = model.nearest(x[lo:hi], 2)
        files["cluster_ids"][lo:hi], files["centroid_sims"][lo:hi] = ids[:, 0], sims[:, 0]
        files["second_ids"][lo:hi] = ids[:, 1]
        files["margins"][lo:hi] = np.where(ids[:, 1] >= 0, sims[:, 0] - sims[:, 1], np.inf)
    for array in files.values():
        array.flush()


_PER_ROW = (
    ("cluster_ids", np.int32),
    ("centroid_sims", np.float32),
    ("second_ids", np.int32),
    ("margins", np.float32),
)


def assign_to_disk(
    path: str | Path, model: KMeansModel, out: str | Path, chunk_rows: int = 200_000, workers: int = 1
) -> Assignment:
    """Nearest centroid of every row, chunk by chunk; the per-cluster row ids are written to `out`."""
    path, out = Path(path), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(open_rows(path))
    for name, dtype in _PER_ROW:
        np.lib.format.open_memmap(
            out / f"{name}.npy", mode="w+", dtype=dtype, shape=(n,)
        )  # workers fill them
    starts = list(range(0, n, chunk_rows))
    if workers <= 1 or len(starts) < 2:
        _assign_rows(path, model, out, 0, n, chunk_rows)
    else:
        spans = [
            (starts[a], min(n, starts[b - 1] + chunk_rows)) for a, b in _ranges(np.ones(len(starts)), workers)
        ]
        with _pool(workers) as pool:
            pool.starmap(_assign_rows, [(path, model, out, a, b, chunk_rows) for a, b in spans])
    ids = np.load(out / "cluster_ids.npy", mmap_mode="r")
    # int32 ids and int64 row numbers: 12 bytes a row in memory for the sort, not the embeddings
    order = np.argsort(np.asarray(ids), kind="stable")
    bounds = np.searchsorted(np.asarray(ids)[order], np.arange(len(model) + 1))
    del ids
    np.save(out / "order.npy", order)
    np.save(out / "bounds.npy", bounds)
    return Assignment(
        out / "order.npy",
        out / "bounds.npy",
        out / "centroid_sims.npy",
        out / "second_ids.npy",
        out / "margins.npy",
    )


def _dedup_range(
    path: Path, groups: tuple[Path, Path, Path], eps: float, policy: str, lo: int, hi: int
) -> Iterator[tuple[np.ndarray, list[ClusterDecision]]]:
    """Groups lo..hi-1 (those of two rows or more) with their decisions; `groups` = (rows grouped, group
    bounds in them, per-row centroid cosines) as .npy files."""
    order, bounds = np.load(groups[0], mmap_mode="r"), np.load(groups[1])
    sims = np.load(groups[2], mmap_mode="r")  # 4 bytes a row: its pages are few
    for c in range(lo, hi):
        if bounds[c + 1] - bounds[c] < 2:
            continue
        rows = np.sort(order[bounds[c] : bounds[c + 1]])  # forward reads
        emb = gather_rows(path, rows)
        zero = np.zeros(len(rows), dtype=np.float32)  # no CLIP scores here: the policy must not need them
        keys = [str(int(r)) for r in rows]
        yield rows, dedup_cluster(keys, emb, np.asarray(sims[rows]), zero, eps, policy)


def _dedup_part(args: tuple) -> list[tuple[np.ndarray, list[ClusterDecision]]]:
    return list(_dedup_range(*args))


def _dedup_groups(
    path: Path, groups: tuple[Path, Path, Path], eps: float, policy: str, workers: int
) -> Iterator[tuple[np.ndarray, list[ClusterDecision]]]:
    """Every group in order whatever `workers` is; with workers > 1 they are split into contiguous ranges
    of about equal work (a group of n rows costs ~n^2), 8 per worker so that one slow range does not leave
    a core idle at the end."""
    from threadpoolctl import threadpool_limits

    sizes = np.diff(np.load(groups[1])).astype(np.float64)
    if workers <= 1:
        with threadpool_limits(1):
            yield from _dedup_range(path, groups, eps, policy, 0, len(sizes))
        return
    parts = _ranges(sizes**2 + 512 * sizes, 8 * workers)
    with _pool(workers) as pool:
        args = [(path, groups, eps, policy, lo, hi) for lo, hi in parts]
        for part in pool.imap(_dedup_part, args):
            yield from part


def dedup_clusters(
    path: str | Path,
    assignment: Assignment,
    eps: float,
    policy: str = "semdedup_hard",
    workers: int = 1,
) -> Iterator[tuple[np.ndarray, list[ClusterDecision]]]:
    """For each cluster, in cluster order: its row ids (ascending) and the decisions, keys being row numbers
    as text."""
    groups = (assignment.order, assignment.bounds, assignment.sims)
    yield from _dedup_groups(Path(path), groups, eps, policy, workers)


def dedup_boundaries(
    path: str | Path,
    assignment: Assignment,
    removed: np.ndarray,
    eps: float,
    margin: float,
    policy: str = "semdedup_hard",
    workers: int = 1,
) -> Iterator[tuple[np.ndarray, list[ClusterDecision]]]:
    """A second pass for the duplicates SemDeDup misses because k-means put the two copies in neighbouring
    clusters: the rows that survived `dedup_clusters` and lie near the border of their cluster (their
    nearest centroid is less than `margin` nearer than the second) are grouped by that pair of centroids,
    and each group is deduplicated like a cluster (same rule, same keep policy, cosines to their own
    centroids). Yields (rows, decisions) per group, as `dedup_clusters`.

    Why it catches them: two copies x, y in clusters A and B each lie nearer their own centroid, and
    |c.x - c.y| <= |x - y| for a unit centroid c, so each one's margin is at most |c_A.(x - y)| +
    |c_B.(x - y)|, small for near copies (a guarantee needs margin 2 sqrt(2 eps), 0.28 at eps 0.01; the
    useful margins are far smaller, measured in bench/bench_semdedup_disk.py; with a projected model the
    argument holds for the projected rows, whose distance can differ from the full one, so the margin is
    a measured setting, not a bound). Consistent with the first
    pass: a row has one nearest pair of centroids, so it is in at most one group; only survivors take part,
    so every removed row names a row that both passes keep. `removed`: bool per row, from the first pass.
    """
    path = Path(path)
    second = np.load(assignment.second)
    margins = np.load(assignment.margins)
    first = np.empty(len(second), dtype=np.int32)
    order, bounds = np.load(assignment.order), np.load(assignment.bounds)
    first[order] = np.repeat(np.arange(len(bounds) - 1, dtype=np.int32), np.diff(bounds))
    rows = np.flatnonzero(~removed & (margins < margin) & (second >= 0))
    lo, hi = np.minimum(first[rows], second[rows]), np.maximum(first[rows], second[rows])
    by_pair = np.lexsort((rows, hi, lo))  # groups by pair of centroids, rows ascending inside
    rows, lo, hi = rows[by_pair], lo[by_pair], hi[by_pair]
    starts = np.flatnonzero(np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])])
    bounds = np.r_[starts, len(rows)]
    where = Path(assignment.order).parent
    np.save(where / "border_order.npy", rows)
    np.save(where / "border_bounds.npy", bounds)
    groups = (where / "border_order.npy", where / "border_bounds.npy", assignment.sims)
    yield from _dedup_groups(Path(path), groups, eps, policy, workers)
