"""Banded LSH pHash near dedup vs the old global FAISS search on random 64-bit hashes plus N/10 copies
0-9 bits away (radius 8): time of each in one process and whether the decisions are identical.

Usage: .venv/bin/python bench/bench_near_dedup_bands.py [N]   (default 100000)
"""

from __future__ import annotations

import sys
import time

import numpy as np

from canvas.curation.near_dedup import HashItem, find_near_duplicates
from canvas.curation.near_dedup_bands import find_near_duplicates_banded


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = np.random.default_rng(0)
    base = [int(v) for v in rng.integers(0, 2**63, n, dtype=np.uint64)]
    items = [HashItem(f"k{i:07d}", h, 100, f"s{i}") for i, h in enumerate(base)]
    for j in range(n // 10):
        h = base[j]
        for bit in rng.choice(64, int(rng.integers(0, 10)), replace=False):
            h ^= 1 << int(bit)
        items.append(HashItem(f"d{j:07d}", h, 50, f"d{j}"))
    t = time.perf_counter()
    g = find_near_duplicates(items, 8, "largest")
    tg = time.perf_counter() - t
    t = time.perf_counter()
    b = find_near_duplicates_banded(items, 8, "largest")
    tb = time.perf_counter() - t
    gs = {(d.uid, d.kept, d.distance) for d in g}
    bs = {(d.uid, d.kept, d.distance) for d in b}
    print(
        f"{len(items)} hashes, radius 8: global FAISS {tg:.1f} s, banded (one process) {tb:.1f} s; removed {len(gs)} vs {len(bs)}; identical {gs == bs}; recall {len(gs & bs) / max(1, len(gs)):.4f}"
    )


if __name__ == "__main__":
    main()
