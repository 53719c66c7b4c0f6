"""SemDeDup past memory (issue 20 item 5): N x 512 embeddings in an `.npy` on disk, read by the
`curation/semdedup/streamed.py` blocks (k-means on a bounded sample in its top `--dims` principal
directions, assignment streamed in chunks writing per-cluster row ids to disk, per-cluster pairwise on rows
read by pread, then the border pass at `--border-margin`; the defaults are the settings that met the
goals). Prints wall time per step, peak RSS (file pages mapped count), recall/precision against planted
copies.

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
import contextlib
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).parent))

from bench_semdedup import score, semdedup  # noqa: E402

from canvas.curation.semdedup import auto_n_clusters  # noqa: E402
from canvas.curation.semdedup.streamed import (  # noqa: E402
    assign_to_disk,
    dedup_boundaries,
    dedup_clusters,
    fit_on_sample,
)

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
    path: Path,
    work: Path,
    sample: int,
    workers: int = 2,
    k: int = 0,
    margin: float = 0.0,
    dims: int | None = None,
) -> tuple[dict[int, int], dict[str, float]]:
    """Removed row -> kept row, and the time of each pass. With `margin`, the border pass runs after the
    clusters (`dedup_boundaries`); times["first_pass_removed"] holds what the clusters alone removed."""
    times: dict[str, float] = {}
    n = len(np.load(path, mmap_mode="r"))
    k = k or auto_n_clusters(n)
    TreeRss.phase = "k-means"
    t = time.perf_counter()
    model = fit_on_sample(path, k, sample, dims=dims)
    times["kmeans"] = time.perf_counter() - t
    TreeRss.phase = "assign"
    t = time.perf_counter()
    assignment = assign_to_disk(path, model, work, chunk_rows=CHUNK, workers=workers)
    times["assign"] = time.perf_counter() - t
    TreeRss.phase = "clusters"
    t = time.perf_counter()
    removed = {}
    for _, decisions in dedup_clusters(path, assignment, EPS, workers=workers):
        for dec in decisions:
            removed[int(dec.key)] = int(dec.duplicate_of)
    times["clusters"] = time.perf_counter() - t
    times["k"] = len(model)
    times["first_pass_removed"] = dict(removed)
    if margin > 0:
        TreeRss.phase = "border"
        t = time.perf_counter()
        mask = np.zeros(n, dtype=bool)
        mask[list(removed)] = True
        for _, decisions in dedup_boundaries(path, assignment, mask, EPS, margin, workers=workers):
            for dec in decisions:
                removed[int(dec.key)] = int(dec.duplicate_of)
        times["border"] = time.perf_counter() - t
    return removed, times


class TreeRss:
    """Peak summed RSS of this process and its children (the spawned workers), sampled every 0.2 s: what
    the machine must hold (file-mapped pages the processes touched included)."""

    phase = "start"  # set by `streamed` as it goes: the peak is reported with the phase it fell in

    def __init__(self) -> None:
        self.peak, self.peak_phase, self.peak_split, self._done = 0, "", "", threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._done.wait(0.2):
            sizes, files = [], []
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # exited between listing and reading
                    info = proc.memory_info()
                    sizes.append(info.rss)
                    files.append(info.shared)  # resident file-backed (and shmem) pages: mapped data
            if sum(sizes) > self.peak:
                self.peak, self.peak_phase = sum(sizes), TreeRss.phase
                self.peak_split = " + ".join(
                    f"{size / 1e9:.2f} ({file / 1e9:.2f} file)"
                    for size, file in zip(sizes, files, strict=True)
                )

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


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
    parser.add_argument(
        "--dims",
        type=int,
        default=64,
        help="k-means in the sample's top DIMS principal directions (0: the embeddings' own space)",
    )
    parser.add_argument(
        "--border-margin",
        type=float,
        default=0.01,
        help="also run the border pass (dedup_boundaries) on rows this much nearer their centroid than the next",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where the data goes (default: a temp folder)")
    parser.add_argument(
        "--keep-data",
        type=Path,
        default=None,
        help="keep the generated data in this folder and reuse it when run again with the same settings",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="semdedup_disk_", dir=args.dir))
    try:
        path, pairs = data(folder, args)
        size = path.stat().st_size / 2**30
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the generator's processes
        child_cpu0 = children.ru_utime + children.ru_stime
        start, cpu0 = time.perf_counter(), time.process_time()
        with TreeRss() as rss:
            removed, times = streamed(
                path,
                folder / "work",
                args.sample,
                args.workers,
                args.k,
                args.border_margin,
                args.dims or None,
            )
        total, cpu = time.perf_counter() - start, time.process_time() - cpu0
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu = children.ru_utime + children.ru_stime - child_cpu0
        peak = rss.peak / 1e9
        recall, precision = score(removed, pairs)
        if args.border_margin > 0:
            r0, p0 = score(times["first_pass_removed"], pairs)
            print(
                f"border pass (margin {args.border_margin}): {times['border']:.1f} s; clusters alone removed "
                f"{len(times['first_pass_removed'])} (recall {r0:.4f} precision {p0:.4f}), with the border pass "
                f"{len(removed)}"
            )
        print(
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; CPU time {cpu + child_cpu:.1f} s "
            f"(main {cpu:.1f} s, {args.workers} workers {child_cpu:.1f} s)"
        )
        print(
            f"SemDeDup from disk {args.n}: {total:.1f} s (k-means {times['kmeans']:.1f} s on {args.sample}, "
            f"assign {times['assign']:.1f} s; {times['k']} clusters {times['clusters']:.1f} s)"
        )
        print(
            f"  removed {len(removed)}; recall {recall:.4f} precision {precision:.4f}; peak RSS of the process "
            f"tree {peak:.2f} GB in {rss.peak_phase} (main + workers, GB: {rss.peak_split}; sampled every 0.2 s; data {size:.2f} GiB on disk); goals: "
            f"<= {GOAL_S:.0f} s {'met' if total <= GOAL_S else 'NOT met'}, <= {GOAL_RSS_GB:.0f} GB "
            f"{'met' if peak <= GOAL_RSS_GB else 'NOT met'}, recall {'met' if recall >= GOAL_RECALL else 'NOT met'}, "
            f"precision {'met' if precision >= GOAL_PRECISION else 'NOT met'}"
        )
        shutil.rmtree(folder / "work")
        if args.keep_data is None:
            path.unlink()
        if args.compare:  # after the main run: its peak RSS is measured alone
            compare(folder, args.compare, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def data(folder: Path, args: argparse.Namespace) -> tuple[Path, np.ndarray]:
    """The data file and its planted pairs: generated into `folder`, or reused from `--keep-data`."""
    where = folder
    if args.keep_data is not None:
        where = args.keep_data / f"n{args.n}_d{args.d}_c{args.centers}_f{args.dup_fraction}_{args.dtype}"
        if (where / "pairs.npy").exists():
            print(f"data: reused from {where}")
            return where / "emb.npy", np.load(where / "pairs.npy")
        where.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    pairs = write_data(where / "emb.npy", args.n, args.d, args.centers, args.dup_fraction, args.dtype)
    np.save(where / "pairs.npy", pairs)  # last: its presence says the data are whole
    print(
        f"data: {args.n} x {args.d} {args.dtype} on disk ({(where / 'emb.npy').stat().st_size / 2**30:.2f} GiB), "
        f"{len(pairs)} planted copies, written in {time.perf_counter() - t:.1f} s (not timed below)"
    )
    return where / "emb.npy", pairs


if __name__ == "__main__":
    main()
