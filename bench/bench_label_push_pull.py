"""Push 10,000 pairs and pull 10,000 annotations against a real Label Studio; ratios vs its raw API.

Goals: push <= 10 s, pull <= 15 s. Baselines, measured in the same run on the same server: Label
Studio's own import of the same 10,000 tasks (1,000 per request) and its own JSON export of the same
annotated project. Candidate images are small random PNGs (the benchmark measures labeling I/O, not
generation).

Usage: .venv/bin/python bench/bench_label_push_pull.py [--pairs 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _label_bench import annotated_project, fmt_rounds, running_server, timed, write_candidates  # noqa: E402

from canvas.labeling.local_files import local_file_url, project_images_dir  # noqa: E402
from canvas.labeling.pull import pull_preferences  # noqa: E402
from canvas.labeling.push import push_candidates  # noqa: E402
from canvas.labeling.schema import LABEL_CONFIG  # noqa: E402

PUSH_GOAL_S, PULL_GOAL_S = 10.0, 15.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per measurement; medians are printed")
    args = parser.parse_args()
    n = args.pairs
    raw_imports, pushes, raw_exports, pulls = [], [], [], []

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with running_server(tmp / "ls") as (server, client):
            candidates = tmp / "candidates"
            write_candidates(candidates, n)
            rows = pq.read_table(candidates / "candidates.parquet", columns=["pair_id", "prompt"]).to_pylist()
            folder = project_images_dir(server.files_root, 0, "bench push 0")
            tasks = [
                {
                    "data": {
                        "pair_id": r["pair_id"],
                        "prompt": r["prompt"],
                        "image_0": local_file_url(server.files_root, folder / f"{r['pair_id']}_0.png"),
                        "image_1": local_file_url(server.files_root, folder / f"{r['pair_id']}_1.png"),
                    }
                }
                for r in rows
            ]
            for r in range(args.rounds):
                # Baseline: Label Studio's own import of the same tasks, 1,000 per request, into a new project.
                raw_project = client.create_project(f"bench raw import {r}", LABEL_CONFIG, 1)
                start = time.perf_counter()
                for i in range(0, n, 1000):
                    client.import_tasks(raw_project, tasks[i : i + 1000])
                raw_imports.append(time.perf_counter() - start)
                pushed, seconds = timed(
                    push_candidates, candidates, f"bench push {r}", url=server.url, data_dir=server.data_dir
                )
                assert pushed.created == n, pushed
                pushes.append(seconds)
            _, repush_s = timed(
                push_candidates, candidates, "bench push 0", url=server.url, data_dir=server.data_dir
            )

            # An annotated project: n/2 pairs x 2 annotators = n annotations, imported inline with the tasks.
            pull_project, _ = annotated_project(client, "bench pull", [t["data"] for t in tasks[: n // 2]])
            for _ in range(args.rounds):
                exported, seconds = timed(client.export_tasks, pull_project)
                raw_exports.append(seconds)
                total = sum(len(t["annotations"]) for t in exported)
                pulled, seconds = timed(
                    pull_preferences, "bench pull", tmp / "pulled", url=server.url, data_dir=server.data_dir
                )
                assert pulled.kept == total, (pulled, total)
                pulls.append(seconds)

    push_s, raw_import_s = statistics.median(pushes), statistics.median(raw_imports)
    pull_s, raw_export_s = statistics.median(pulls), statistics.median(raw_exports)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average {load}; medians of {args.rounds} rounds")
    print(f"push {n} pairs: {push_s:.2f} s (goal <= {PUSH_GOAL_S:.0f} s; rounds {fmt_rounds(pushes)}) | Label Studio "
          f"raw import of the same tasks: {raw_import_s:.2f} s (rounds {fmt_rounds(raw_imports)}) | ratio ours/raw "
          f"{push_s / raw_import_s:.2f}x | idempotent re-push (0 new): {repush_s:.2f} s")  # fmt: skip
    print(f"pull {total} annotations ({n // 2} pairs): {pull_s:.2f} s (goal <= {PULL_GOAL_S:.0f} s; rounds "
          f"{fmt_rounds(pulls)}) | Label Studio raw JSON export: {raw_export_s:.2f} s (rounds {fmt_rounds(raw_exports)}) | "
          f"ratio ours/raw {pull_s / raw_export_s:.2f}x")  # fmt: skip
    print(f"goals met: push {push_s <= PUSH_GOAL_S}, pull {pull_s <= PULL_GOAL_S}")


if __name__ == "__main__":
    main()
