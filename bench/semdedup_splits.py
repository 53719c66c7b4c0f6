"""Why SemDeDup misses planted copies on a synthetic pool: how often k-means puts a copy in another
cluster than its original, and how many of those the border pass (pairs of neighbouring clusters within
`--margin`) can reach. Numpy + FAISS on the pool's embeddings, no Beam; same k-means as the pipeline
(spherical, k = sqrt(n) unless `--k`, fitted on a 100k random sample).

    .venv/bin/python bench/semdedup_splits.py --n 1000000 [--k 1000] [--margin 0.01] [--dir /tmp/x]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))

from make_pool import make_pool  # noqa: E402

from canvas.curation.semdedup.kmeans import fit_kmeans, nearest_centroids  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=0, help="clusters (0: sqrt(n), the pipeline's auto)")
    parser.add_argument("--margin", type=float, default=0.01)
    parser.add_argument("--dir", type=Path, help="keep the pool here (default: a temp folder)")
    args = parser.parse_args()
    k = args.k or round(math.sqrt(args.n))
    with tempfile.TemporaryDirectory() as tmp:
        pool = (args.dir or Path(tmp)) / f"pool{args.n}"
        if not pool.exists():  # the seed bench_curate_scale.py uses for this size
            make_pool(pool, args.n, shards=max(1, math.ceil(args.n / 100_000)), seed=args.n)
        uids, parts = [], []
        for shard in sorted(pool.glob("shard_*.parquet")):
            uids += pq.read_table(shard, columns=["uid"]).column(0).to_pylist()
            with np.load(shard.with_suffix(".npz")) as arrays:
                parts.append(arrays["b32_img"].astype(np.float32))
        x = np.concatenate(parts)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        truth = pq.read_table(pool.parent / f"{pool.name}_truth.parquet").to_pydict()
    position = {u: i for i, u in enumerate(uids)}
    row = np.array([position[u] for u in truth["uid"]])
    group, kind = np.array(truth["group"]), np.array(truth["kind"])
    original = dict(zip(group[kind == "original"], row[kind == "original"], strict=True))
    sample = x[np.random.default_rng(0).choice(len(x), min(len(x), 100_000), replace=False)]
    start = time.perf_counter()
    centroids = fit_kmeans(sample, k)
    ids, sims = nearest_centroids(x, centroids, 3)
    first, second, gap = ids[:, 0], ids[:, 1], sims[:, 0] - sims[:, 1]
    gap3 = sims[:, 0] - sims[:, 2]
    print(f"n {args.n:,}, k {k}: k-means + assignment {time.perf_counter() - start:.1f} s")
    print(f"gap to the second centroid, all rows, 10/50/90%: {np.quantile(gap, [0.1, 0.5, 0.9]).round(4)}")
    for name in ("exact", "near", "semantic"):
        copy = row[kind == name]
        orig = np.array([original[g] for g in group[kind == name]])
        split = first[copy] != first[orig]
        facing = (second[copy] == first[orig]) & (second[orig] == first[copy])
        caught = split & facing & (gap[copy] < args.margin) & (gap[orig] < args.margin)
        cosine = np.sum(x[copy] * x[orig], axis=1)
        # The other shape of border pass: a survivor within the margin of another cluster's centroid meets
        # every survivor of that cluster. Reaches a split pair when either one is that near the other's.
        to_other = (
            np.sum(x[copy] * centroids[first[orig]], axis=1),
            np.sum(x[orig] * centroids[first[copy]], axis=1),
        )
        near_other = (sims[copy, 0] - to_other[0] < args.margin) | (sims[orig, 0] - to_other[1] < args.margin)
        # The pipeline's shape of it: each survivor visits only its nearest `visits` other centroids.
        visits = []
        for top in (1, 2):
            reach_c = (second[copy] == first[orig]) & (gap[copy] < args.margin)
            reach_o = (second[orig] == first[copy]) & (gap[orig] < args.margin)
            if top == 2:
                reach_c |= (ids[copy, 2] == first[orig]) & (gap3[copy] < args.margin)
                reach_o |= (ids[orig, 2] == first[copy]) & (gap3[orig] < args.margin)
            visits.append((split & ~(reach_c | reach_o)).mean())
        print(
            f"{name:9s} copies {len(copy):8,}  cosine to original {cosine.mean():.4f}  split {split.mean():.4f}  "
            f"split and within the margin of the pair {caught.mean():.4f}  split and missed {(split & ~caught).mean():.4f}  "
            f"split and missed by a pass that meets every survivor of the near cluster {(split & ~near_other).mean():.4f}"
            f" (visiting only the nearest other centroid {visits[0]:.4f}, the nearest two {visits[1]:.4f})"
        )
        if split.any():
            larger = np.maximum(gap[copy], gap[orig])[split]
            print(
                f"          split: larger gap 50/90/99% {np.quantile(larger, [0.5, 0.9, 0.99]).round(4)}, "
                f"second centroid not the other's cluster {np.mean((second[copy] != first[orig])[split]):.3f}"
            )


if __name__ == "__main__":
    main()
