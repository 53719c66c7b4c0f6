"""SemDeDup on 1,000,000 x 512 synthetic embeddings with planted duplicates: time, peak RSS, recall and
precision against the planted truth, and the speed-up over exact FAISS flat range search.

Goals: <= 60 s, peak RSS <= 4 GB, recall >= 0.98, precision >= 0.99. Runs the engine-agnostic blocks of
`curation/semdedup` (k-means on a `--sample` subset, assignment, per-cluster dedup; the same functions the
Beam pipeline calls per cluster) in one process. Baseline, measured in the same run: exact
`IndexFlatIP.range_search` (all pairs with cosine >= 1 - eps) on a `--subset` of the data, compared with
SemDeDup on that same subset; the exact search is quadratic, so its 1M figure is extrapolated (n^2).

Data: `--centers` topics; each vector = its topic + noise (cosine ~0.6 to the topic, like CLIP
neighbourhoods); `--dup-fraction` of them get a copy with cosine ~0.997 (a re-encode). eps = 0.01.

Usage: .venv/bin/python bench/bench_semdedup.py [--n 1000000] [--subset 50000]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from canvas.curation.semdedup import assign_clusters, auto_n_clusters, dedup_cluster, fit_kmeans

EPS = 0.01
GOAL_S, GOAL_RSS_GB, GOAL_RECALL, GOAL_PRECISION = 60.0, 4.0, 0.98, 0.99


def make_data(n: int, d: int, centers: int, dup_fraction: float, seed: int = 0):
    """(n, d) float32 unit vectors (built in place, chunk by chunk) and the planted (original, copy) pairs."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((centers, d), dtype=np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    n_dups = int(n * dup_fraction)
    n_base = n - n_dups
    # Rows are written at shuffled positions (copies must not sit at the end), without a second copy.
    position = rng.permutation(n)
    x = np.empty((n, d), dtype=np.float32)
    topic_noise, dup_noise = 0.059, 0.0034  # cosine ~0.6 to the topic, ~0.997 to the original
    chunk = 100_000
    for s in range(0, n_base, chunk):
        e = min(n_base, s + chunk)
        block = topics[rng.integers(0, centers, e - s)] + topic_noise * rng.standard_normal(
            (e - s, d), dtype=np.float32
        )
        x[position[s:e]] = block / np.linalg.norm(block, axis=1, keepdims=True)
    originals = rng.choice(n_base, n_dups, replace=False)
    for s in range(0, n_dups, chunk):
        e = min(n_dups, s + chunk)
        block = x[position[originals[s:e]]] + dup_noise * rng.standard_normal((e - s, d), dtype=np.float32)
        x[position[n_base + s : n_base + e]] = block / np.linalg.norm(block, axis=1, keepdims=True)
    pairs = np.stack([position[originals], position[n_base:]], axis=1)
    return x, pairs


def semdedup(x: np.ndarray, sample: int, seed: int = 0) -> tuple[dict[int, int], dict[str, float]]:
    """Removed row -> kept row, and timings of each step."""
    times = {}
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    sample_idx = np.sort(rng.choice(len(x), min(sample, len(x)), replace=False))
    k = auto_n_clusters(len(x))
    centroids = fit_kmeans(x[sample_idx], k, niter=20, seed=seed)
    times["kmeans"] = time.perf_counter() - t
    t = time.perf_counter()
    ids, sims = assign_clusters(x, centroids)
    times["assign"] = time.perf_counter() - t
    t = time.perf_counter()
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(k + 1))
    removed: dict[int, int] = {}
    largest = 0
    for c in range(k):
        members = order[bounds[c] : bounds[c + 1]]
        largest = max(largest, len(members))
        if len(members) < 2:
            continue
        keys = [f"{i:08d}" for i in members]
        zero = np.zeros(len(members), dtype=np.float32)
        for dec in dedup_cluster(keys, x[members], sims[members], zero, EPS, "semdedup_hard"):
            removed[int(dec.key)] = int(dec.duplicate_of)
    times["clusters"] = time.perf_counter() - t
    times["k"] = k
    times["largest_cluster"] = largest
    return removed, times


def exact(x: np.ndarray) -> dict[int, int]:
    """All pairs with cosine >= 1 - eps by exact flat range search; the later row of a pair is removed."""
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    lims, _, found = index.range_search(x, 1.0 - EPS)
    removed = {}
    for q in range(len(x)):
        for j in found[lims[q] : lims[q + 1]]:
            if j < q:
                removed[q] = int(j)
                break
    return removed


def score(removed: dict[int, int], pairs: np.ndarray) -> tuple[float, float]:
    partner = {int(a): int(b) for a, b in pairs} | {int(b): int(a) for a, b in pairs}
    correct = sum(1 for r, kept in removed.items() if partner.get(r) == kept)
    return correct / max(len(pairs), 1), correct / max(len(removed), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--centers", type=int, default=1000)
    parser.add_argument("--dup-fraction", type=float, default=0.05)
    parser.add_argument(
        "--sample", type=int, default=100_000, help="k-means sample (the config's sample_size)"
    )
    parser.add_argument("--subset", type=int, default=50_000, help="rows for the exact-search baseline")
    args = parser.parse_args()

    t = time.perf_counter()
    x, pairs = make_data(args.n, args.d, args.centers, args.dup_fraction)
    print(
        f"data: {args.n} x {args.d} float32 ({x.nbytes / 2**30:.2f} GiB), {len(pairs)} planted copies, "
        f"built in {time.perf_counter() - t:.1f} s"
    )

    start, cpu_start = time.perf_counter(), time.process_time()
    removed, times = semdedup(x, args.sample)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    recall, precision = score(removed, pairs)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; CPU time {cpu:.1f} s")
    print(
        f"SemDeDup {args.n}: {total:.1f} s (k-means {times['kmeans']:.1f} s on {args.sample}, assign "
        f"{times['assign']:.1f} s, {times['k']} clusters {times['clusters']:.1f} s, largest {times['largest_cluster']})"
    )
    print(
        f"  removed {len(removed)}; recall {recall:.4f} precision {precision:.4f}; peak RSS {rss_gb:.2f} GB "
        f"(incl. the {x.nbytes / 2**30:.2f} GiB of data); goals: <= {GOAL_S:.0f} s "
        f"{'met' if total <= GOAL_S else 'NOT met'}, <= {GOAL_RSS_GB:.0f} GB {'met' if rss_gb <= GOAL_RSS_GB else 'NOT met'}, "
        f"recall {'met' if recall >= GOAL_RECALL else 'NOT met'}, precision {'met' if precision >= GOAL_PRECISION else 'NOT met'}"
    )

    sub = np.arange(min(args.subset, args.n))
    in_sub = (pairs[:, 0] < len(sub)) & (pairs[:, 1] < len(sub))
    xs = np.ascontiguousarray(x[sub])
    t = time.perf_counter()
    removed_exact = exact(xs)
    t_exact = time.perf_counter() - t
    t = time.perf_counter()
    removed_sub, _ = semdedup(xs, args.sample)
    t_sem = time.perf_counter() - t
    r_ex, p_ex = score(removed_exact, pairs[in_sub])
    r_sd, p_sd = score(removed_sub, pairs[in_sub])
    print(
        f"subset {len(sub)}: exact flat range search {t_exact:.1f} s (recall {r_ex:.4f} precision {p_ex:.4f}); "
        f"SemDeDup {t_sem:.1f} s (recall {r_sd:.4f} precision {p_sd:.4f}); speed-up {t_exact / t_sem:.1f}x"
    )
    extrapolated = t_exact * (args.n / len(sub)) ** 2
    print(
        f"exact flat range search extrapolated to {args.n} (n^2): {extrapolated:.0f} s; "
        f"SemDeDup measured {total:.1f} s; speed-up {extrapolated / total:.0f}x"
    )


if __name__ == "__main__":
    main()
