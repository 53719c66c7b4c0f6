"""`canvas curate` on synthetic DataComp-layout pools from 10k records up (no images, precomputed 512-d
embeddings): wall time, records/s, peak RSS of the whole process tree, SemDeDup recall/precision against
the planted duplicates (bench/make_pool.py) and the growth exponent between sizes.

Goals (issue 20, 2 cores): 1M records <= 15 min, peak <= 6 GB, growth <= n log n, recall >= 0.98,
precision >= 0.99.

Recall counts, per planted group, the members that reached SemDeDup (not rejected by an earlier stage):
all but one of them should go. Precision: of the SemDeDup removals, the share that name a member of their
own planted group as `duplicate_of`.

Usage: .venv/bin/python bench/bench_curate_scale.py [--max 100000] [--sizes N ...] [--keep DIR]
       [--runner-args ...]   (--max 1000000 adds the 1M run)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))

from make_pool import make_pool  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
ROWS_PER_SHARD = 25_000  # about DataComp's ~10k-rows metadata shards, fewer files at 1M


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # exited between listing and reading
            total += p.memory_info().rss
    return total


def run_curate(pool: Path, out: Path, runner_args: list[str]) -> tuple[float, int]:
    """Wall seconds and the peak summed RSS (sampled every 0.1 s) of `canvas curate` and its children."""
    cmd = [sys.executable, "-m", "canvas", "curate", "--input", str(pool), "--output", str(out), *runner_args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, ps = 0, psutil.Process(proc.pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, _tree_rss(ps))
            except psutil.Error:
                return
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"canvas curate failed ({proc.returncode}): {err.strip()[-2000:]}")
    return time.perf_counter() - t0, peak


def dedup_quality(truth_path: Path, out: Path) -> tuple[float, float, dict[str, int], int]:
    truth = pq.read_table(truth_path, columns=["uid", "group"]).to_pydict()
    group_of = dict(zip(truth["uid"], truth["group"], strict=True))
    rejected = pq.read_table(out / "rejected", columns=["key", "stage", "duplicate_of"]).to_pylist()
    by_stage: dict[str, int] = defaultdict(int)
    earlier = set()
    for r in rejected:
        by_stage[r["stage"]] += 1
        if r["stage"] != "semantic_dedup":
            earlier.add(r["key"])
    alive: dict[int, int] = defaultdict(int)
    for uid, g in group_of.items():
        if uid not in earlier:
            alive[g] += 1
    should_go = sum(c - 1 for c in alive.values() if c > 1)
    sem = [r for r in rejected if r["stage"] == "semantic_dedup"]
    # duplicate_of is null when the ledger found no kept record showing the picture: never right.
    right = sum(1 for r in sem if group_of[r["key"]] == group_of.get(r["duplicate_of"]))
    recall = right / should_go if should_go else 1.0
    precision = right / len(sem) if sem else 1.0
    return recall, precision, dict(by_stage), sum(1 for r in sem if r["duplicate_of"] is None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max", type=int, default=100_000, help="largest size to run (1000000 adds 1M)")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="run only these sizes (default: 10k up to --max)"
    )
    parser.add_argument("--keep", type=Path, help="make pools and outputs here and keep them (default: temp)")
    parser.add_argument("--runner-args", nargs=argparse.REMAINDER, default=[], help="Beam flags for curate")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        tmp = args.keep or temp
        for n in args.sizes or [s for s in SIZES if s <= args.max]:
            pool = Path(tmp) / f"pool{n}"
            t0 = time.perf_counter()
            planted = make_pool(pool, n, shards=max(1, math.ceil(n / ROWS_PER_SHARD)), seed=n)
            made = time.perf_counter() - t0
            wall, peak = run_curate(pool, Path(tmp) / f"out{n}", args.runner_args)
            recall, precision, by_stage, nulls = dedup_quality(
                Path(tmp) / f"pool{n}_truth.parquet", Path(tmp) / f"out{n}"
            )
            rows.append((n, wall))
            print(
                f"n={n:>9,}  wall {wall:8.1f} s  {n / wall:8.0f} records/s  peak RSS {peak / 2**30:5.2f} GiB  "
                f"recall {recall:.4f}  precision {precision:.4f}  null duplicate_of {nulls}  (pool made in {made:.1f} s; planted {planted}; "
                f"rejected by stage {by_stage})",
                flush=True,
            )
    for (n1, t1), (n2, t2) in zip(rows, rows[1:], strict=False):
        exponent = math.log(t2 / t1) / math.log(n2 / n1)
        print(
            f"growth {n1:,} -> {n2:,}: time ~ n^{exponent:.2f} (n log n here would be n^{1 + math.log(math.log(n2) / math.log(n1)) / math.log(n2 / n1):.2f})"
        )


if __name__ == "__main__":
    main()
