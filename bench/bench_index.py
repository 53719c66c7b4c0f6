"""Recall@10 and query latency of compressed FAISS indexes against exact search (the baseline, same run).

Goal (issue 8): recall@10 >= 0.95 with the index file under 1/8 of the raw float32 vectors.

Data: synthetic, embedding-like unit vectors in 512-d (no real CLIP embeddings can be had offline): 2000
cluster centres, each point = centre + a 64-d latent offset with a power-law spectrum (std ~ i^-0.5,
norm ~0.6) + small isotropic noise, L2-normalised. Queries come from the same distribution. Exact
neighbours: `IndexFlatIP` over all vectors. recall@10 = |approx top-10 & exact top-10| / 10 (the strict
"10-recall@10", not "is the true first neighbour among the 10").

Usage: python bench/bench_index.py [--n 1000000] [--queries 1000] [--factory F ...]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time

import faiss
import numpy as np

DIM = 512


def synthetic(n: int, seed: int, dim: int = DIM, centres: int = 2000, latent: int = 64) -> np.ndarray:
    """n embedding-like unit vectors; the structure (centres, latent basis) is shared across seeds."""
    shared = np.random.default_rng(12345)
    centre = shared.standard_normal((centres, dim)).astype(np.float32) / np.sqrt(dim)
    basis = np.linalg.qr(shared.standard_normal((dim, latent)))[0].astype(np.float32)
    spectrum = (np.arange(1, latent + 1) ** -0.5).astype(np.float32)
    spectrum *= 0.6 / np.sqrt((spectrum**2).sum())
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        z = rng.standard_normal((hi - lo, latent)).astype(np.float32) * spectrum
        noise = rng.standard_normal((hi - lo, dim)).astype(np.float32) * (0.15 / np.sqrt(dim))
        out[lo:hi] = centre[rng.integers(0, centres, hi - lo)] + z @ basis.T + noise
    faiss.normalize_L2(out)
    return out


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))


def search_params(index: faiss.Index, nprobe: int, k_factor: int) -> faiss.SearchParameters:
    ivf = faiss.SearchParametersIVF(nprobe=nprobe)
    if isinstance(faiss.downcast_index(index), faiss.IndexRefine):
        return faiss.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=ivf)
    return ivf


def main() -> None:
    from canvas.curation.index import _no_polysemous_training, choose_factory, metric_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--train-sample", type=int, default=256_000)
    parser.add_argument("--nprobe", type=int, nargs="+", default=None, help="default: nlist/32 ... nlist/4")
    parser.add_argument("--k-factor", type=int, default=16)
    parser.add_argument("--factory", nargs="*", default=None, help="default: `auto`'s choice + alternatives")
    args = parser.parse_args()

    t0 = time.perf_counter()
    base, queries = synthetic(args.n, seed=0), synthetic(args.queries, seed=1)
    raw = base.nbytes
    print(
        f"data: {args.n} x {DIM} float32 ({raw / 2**20:.0f} MiB), {args.queries} queries, {time.perf_counter() - t0:.1f} s"
    )
    exact = faiss.IndexFlatIP(DIM)
    exact.add(base)
    t0 = time.perf_counter()
    _, truth = exact.search(queries, 10)
    exact_ms = (time.perf_counter() - t0) / args.queries * 1000
    print(f"baseline exact IndexFlatIP: {exact_ms:.2f} ms/query (batch of {args.queries}), size 1/1")
    del exact

    auto, _, _ = choose_factory(args.n, DIM)
    found = re.search(r"IVF(\d+)", auto)
    nlist = int(found.group(1)) if found else 1024
    # auto's choice, then the alternatives it was picked over (4-bit codes of 15/16 of the dims, 8-bit of 15/32)
    factories = args.factory or [auto, f"PCAR480,IVF{nlist},SQ4", f"PCAR240,IVF{nlist},SQ8"]
    sample = base[
        np.sort(np.random.default_rng(0).choice(args.n, min(args.n, args.train_sample), replace=False))
    ]
    for factory in factories:
        # as `canvas index build` does: L2 (same ranking on unit vectors) where PCA's centring breaks IP
        metric = faiss.METRIC_L2 if metric_for(factory) == "l2" else faiss.METRIC_INNER_PRODUCT
        index = faiss.index_factory(DIM, factory, metric)
        _no_polysemous_training(index)
        t0 = time.perf_counter()
        index.train(sample)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index.add(base)
        add_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.faiss")
            faiss.write_index(index, path)
            size = os.path.getsize(path)
        print(
            f"{factory}: train {train_s:.0f} s on {len(sample)}, add {add_s:.0f} s, "
            f"{size / args.n:.0f} B/vector, size = 1/{raw / size:.1f} of raw"
        )
        for nprobe in args.nprobe or [nlist // 64, nlist // 32]:
            params = search_params(index, nprobe, args.k_factor)
            t0 = time.perf_counter()
            _, found = index.search(queries, 10, params=params)
            ms = (time.perf_counter() - t0) / args.queries * 1000
            recall = recall_at_10(found, truth)
            ok = "MEETS" if recall >= 0.95 and size < raw / 8 else "misses"
            print(
                f"  nprobe={nprobe:<4d}: recall@10 {recall:.3f}, "
                f"{ms:.2f} ms/query ({exact_ms / ms:.1f}x faster than exact) -> {ok} the goal",
                flush=True,
            )
        del index


if __name__ == "__main__":
    main()
