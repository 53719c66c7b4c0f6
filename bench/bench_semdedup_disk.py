"""SemDeDup past memory (issue 20 item 5): N x 512 embeddings in an `.npy` on disk, read through a memory
map by the `curation/semdedup/streamed.py` blocks (k-means on a bounded sample, assignment streamed in
chunks writing per-cluster row ids to disk, per-cluster pairwise from the map). Prints wall time per
step, peak RSS (file pages mapped count), recall/precision against planted copies.

Goals: 10M x 512 in <= 4 min with <= 4 GB peak on 2 cores, recall >= 0.98, precision >= 0.99.

Baseline in the same run, at `--compare` rows: the in-memory blocks (bench_semdedup.semdedup) on the same
rows as float32, and the streamed pass on a float32 copy: time ratio and the Jaccard of removed rows, so
the cost of reading from disk and of float16 storage are both measured.

Data: `--centers` topics, each row = topic + noise (cosine ~0.6 to the topic); within every chunk of
rows, `--dup-fraction` of them are copies (cosine ~0.997) of an original of the same chunk, at random
positions. Generated chunk by chunk straight into the file (not timed).

Usage: .venv/bin/python bench/bench_semdedup_disk.py [--n 10000000] [--dtype float16] [--dir /tmp/x]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_semdedup import score, semdedup  # noqa: E402

from canvas.curation.semdedup import auto_n_clusters  # noqa: E402
from canvas.curation.semdedup.streamed import assign_to_disk, dedup_clusters, fit_on_sample  # noqa: E402

EPS = 0.01
GOAL_S, GOAL_RSS_GB, GOAL_RECALL, GOAL_PRECISION = 240.0, 4.0, 0.98, 0.99
CHUNK = 200_000


def _write_chunk(
    path: Path,
    offset: int,
    index: int,
    m: int,
    d: int,
    topics: np.ndarray,
    dup_fraction: float,
    dtype: str,
    seed: int,
) -> np.ndarray:
    """Chunk `index` (its own seed, so any process can write it) at its place in the file; its pairs."""
    rng = np.random.default_rng([seed, index])
    start = index * CHUNK
    block = topics[rng.integers(0, len(topics), m)] + 0.059 * rng.standard_normal((m, d), dtype=np.float32)
    block /= np.linalg.norm(block, axis=1, keepdims=True)
    n_dups = int(m * dup_fraction)
    position = rng.permutation(m)
    originals, copies = position[: m - n_dups][:n_dups], position[m - n_dups :]
    dup = block[originals] + 0.0034 * rng.standard_normal((n_dups, d), dtype=np.float32)
    block[copies] = dup / np.linalg.norm(dup, axis=1, keepdims=True)
    data = block.astype(dtype)
    with open(path, "r+b") as handle:
        handle.seek(offset + start * d * data.itemsize)
        handle.write(data.tobytes())
    return np.stack([originals + start, copies + start], axis=1)


def write_data(
    path: Path, n: int, d: int, centers: int, dup_fraction: float, dtype: str, seed: int = 0, workers: int = 2
) -> np.ndarray:
    """Writes the `.npy` chunk by chunk, `workers` processes writing chunks at their offsets; returns the
    planted (original row, copy row) pairs."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((centers, d), dtype=np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    # The header through open_memmap, the rows by plain writes: a writable map would leave every page
    # it touched in this process's resident set and inflate the peak RSS measured afterwards.
    header = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=(n, d))
    del header
    offset = np.load(path, mmap_mode="r").offset
    args = [
        (path, offset, i, min(CHUNK, n - i * CHUNK), d, topics, dup_fraction, dtype, seed)
        for i in range((n + CHUNK - 1) // CHUNK)
    ]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pairs = pool.starmap(_write_chunk, args)
    return np.concatenate(pairs)


def streamed(
    path: Path, work: Path, sample: int, workers: int = 2, k: int = 0
) -> tuple[dict[int, int], dict[str, float]]:
    times: dict[str, float] = {}
    n = len(np.load(path, mmap_mode="r"))
    k = k or auto_n_clusters(n)
    t = time.perf_counter()
    centroids = fit_on_sample(path, k, sample)
    times["kmeans"] = time.perf_counter() - t
    t = time.perf_counter()
    assignment = assign_to_disk(path, centroids, work, chunk_rows=CHUNK, workers=workers)
    times["assign"] = time.perf_counter() - t
    t = time.perf_counter()
    removed = {}
    for _, decisions in dedup_clusters(path, assignment, EPS, workers=workers):
        for dec in decisions:
            removed[int(dec.key)] = int(dec.duplicate_of)
    times["clusters"] = time.perf_counter() - t
    times["k"] = k
    return removed, times


def jaccard(a: dict[int, int], b: dict[int, int]) -> float:
    return len(a.keys() & b.keys()) / max(len(a.keys() | b.keys()), 1)


def pair_jaccard(a: dict[int, int], b: dict[int, int]) -> float:
    """The same duplicate pairs found, whichever member of a pair was kept."""
    pa, pb = ({frozenset(p) for p in d.items()} for d in (a, b))
    return len(pa & pb) / max(len(pa | pb), 1)


def compare(folder: Path, n: int, args: argparse.Namespace) -> None:
    """float16 vs float32 on disk vs in memory, at `n` rows, same data (same seed)."""
    results = {}
    for dtype in ("float16", "float32"):
        path = folder / f"cmp_{dtype}.npy"
        pairs = write_data(path, n, args.d, args.centers, args.dup_fraction, dtype)
        t = time.perf_counter()
        results[dtype] = (
            streamed(path, folder / f"cmp_work_{dtype}", args.sample)[0],
            time.perf_counter() - t,
        )
    x = np.load(folder / "cmp_float32.npy")
    t = time.perf_counter()
    in_memory = semdedup(x, args.sample)[0]
    t_mem = time.perf_counter() - t
    for dtype, (removed, wall) in results.items():
        r, p = score(removed, pairs)
        print(
            f"compare {n}: disk {dtype} {wall:.1f} s = {wall / t_mem:.2f}x in-memory float32 ({t_mem:.1f} s); "
            f"removed {len(removed)}, Jaccard vs in-memory {jaccard(removed, in_memory):.4f}; "
            f"recall {r:.4f} precision {p:.4f}"
        )
    print(
        f"compare {n}: float16 vs float32 on disk: Jaccard of removed rows "
        f"{jaccard(results['float16'][0], results['float32'][0]):.4f}, of (removed, kept) pairs "
        f"{pair_jaccard(results['float16'][0], results['float32'][0]):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    parser.add_argument("--centers", type=int, default=1000)
    parser.add_argument("--dup-fraction", type=float, default=0.05)
    parser.add_argument("--sample", type=int, default=100_000, help="k-means sample")
    parser.add_argument(
        "--compare", type=int, default=200_000, help="rows for the float16/float32/in-memory check"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="processes for the assignment and the clusters"
    )
    parser.add_argument("--k", type=int, default=0, help="k-means clusters (0: auto, sqrt(n))")
    parser.add_argument("--dir", type=Path, default=None, help="where the data goes (default: a temp folder)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="semdedup_disk_", dir=args.dir))
    try:
        path = folder / "emb.npy"
        t = time.perf_counter()
        pairs = write_data(path, args.n, args.d, args.centers, args.dup_fraction, args.dtype)
        size = path.stat().st_size / 2**30
        print(
            f"data: {args.n} x {args.d} {args.dtype} on disk ({size:.2f} GiB), {len(pairs)} planted copies, "
            f"written in {time.perf_counter() - t:.1f} s (not timed below)"
        )
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the generator's processes
        child_cpu0 = children.ru_utime + children.ru_stime
        start, cpu0 = time.perf_counter(), time.process_time()
        removed, times = streamed(path, folder / "work", args.sample, args.workers, args.k)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu0
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu = children.ru_utime + children.ru_stime - child_cpu0
        main_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        # RUSAGE_CHILDREN's maxrss is the largest child's (the generator's included); the workers run
        # together, so the peak is bounded by the main process plus `workers` times the largest child.
        worker_rss = children.ru_maxrss / 2**20
        rss = main_rss + args.workers * worker_rss
        recall, precision = score(removed, pairs)
        print(
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; CPU time {cpu + child_cpu:.1f} s "
            f"(main {cpu:.1f} s, {args.workers} workers {child_cpu:.1f} s)"
        )
        print(
            f"SemDeDup from disk {args.n}: {total:.1f} s (k-means {times['kmeans']:.1f} s on {args.sample}, "
            f"assign {times['assign']:.1f} s, {times['k']} clusters {times['clusters']:.1f} s)"
        )
        print(
            f"  removed {len(removed)}; recall {recall:.4f} precision {precision:.4f}; peak RSS <= {rss:.2f} GB "
            f"(main {main_rss:.2f} + {args.workers} x largest child {worker_rss:.2f}; data {size:.2f} GiB on disk); goals: "
            f"<= {GOAL_S:.0f} s {'met' if total <= GOAL_S else 'NOT met'}, <= {GOAL_RSS_GB:.0f} GB "
            f"{'met' if rss <= GOAL_RSS_GB else 'NOT met'}, recall {'met' if recall >= GOAL_RECALL else 'NOT met'}, "
            f"precision {'met' if precision >= GOAL_PRECISION else 'NOT met'}"
        )
        shutil.rmtree(folder / "work")
        path.unlink()
        if args.compare:  # after the main run: its peak RSS is measured alone
            compare(folder, args.compare, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
