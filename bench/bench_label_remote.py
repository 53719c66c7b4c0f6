"""Push and pull pairs through Label Studio's upload API (a server whose data dir the client does not see),
against Label Studio's own import and export of the same tasks, in one run on one real server.

The remote-style push (`push_candidates` given only a client: no local-files root) uploads both images of
every pair to the server (`POST /api/projects/<id>/import?commit_to_project=false`, 100 files a request),
then imports the tasks. The remote pull exports the project and fetches every image back over HTTP.

Baselines, same server, same run:
- push: Label Studio's own `import_tasks` of the same tasks (1,000 per request), and the same plus a bare
  upload of the same files at the same 100 per request (what any remote client must send).
- pull: Label Studio's own JSON export of the same annotated project, and the same plus a bare fetch of
  the same images (8 threads, as pull uses).
Images are small random PNGs (the benchmark measures labeling I/O, not generation).

Usage: .venv/bin/python bench/bench_label_remote.py [--pairs 10000] [--rounds 1] [--pull-pairs N]
       .venv/bin/python bench/bench_label_remote.py --upload-sweep 1000   # files per upload request: is
       the cost per request or per file? (bare uploads of N files at 10, 50 and 100 a request, interleaved)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _label_bench import annotated_project, fmt_rounds, running_server, timed, write_candidates  # noqa: E402

from canvas.labeling.client import LabelStudioClient  # noqa: E402
from canvas.labeling.pull import pull_preferences  # noqa: E402
from canvas.labeling.push import push_candidates  # noqa: E402
from canvas.labeling.schema import LABEL_CONFIG  # noqa: E402
from canvas.labeling.upload import FILES_PER_REQUEST, IMAGES_CONFIG  # noqa: E402


def raw_upload(
    client: LabelStudioClient,
    title: str,
    files: list[tuple[str, bytes]],
    per_request: int = FILES_PER_REQUEST,
) -> list[str]:
    """The bare upload: the same files, the same request size, into a one-image project; their URLs."""
    project = client.create_project(title, IMAGES_CONFIG, 1)
    ids: list[int] = []
    for start in range(0, len(files), per_request):
        ids += client.upload_files(project, files[start : start + per_request])
    by_id = {f["id"]: f["file"] for f in client.file_uploads(project)}
    return ["/data/" + by_id[i] for i in ids]


class Timed:
    """Wraps some methods of one client to add up the seconds spent in each (where the time goes)."""

    def __init__(self, client: LabelStudioClient, names: tuple[str, ...]) -> None:
        self.client, self.seconds = client, dict.fromkeys(names, 0.0)
        for name in names:
            setattr(client, name, self._wrap(name, getattr(client, name)))

    def _wrap(self, name: str, fn):  # noqa: ANN001, ANN202
        def timed_call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return timed_call

    def describe(self, total: float, threaded: bool = False) -> str:
        parts = [f"{name} {s:.1f} s" for name, s in self.seconds.items()]
        if threaded:  # summed over threads: more than the wall time, so no "rest"
            return ", ".join(parts) + " (summed over threads)"
        return ", ".join(parts) + f", the rest {total - sum(self.seconds.values()):.1f} s"


def upload_sweep(files_count: int, rounds: int) -> None:
    """Bare uploads of the same files at 10, 50 and 100 files a request (Label Studio's most), interleaved."""
    sizes = (10, 50, FILES_PER_REQUEST)
    seconds: dict[int, list[float]] = {k: [] for k in sizes}
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp) / "ls") as (_, client):
        write_candidates(Path(tmp) / "c", files_count // 2)
        rows = pq.read_table(Path(tmp) / "c" / "candidates.parquet").to_pylist()
        files = [(f"{r['pair_id']}_{i}.png", r[f"image_{i}"]) for r in rows for i in (0, 1)]
        for r in range(rounds):
            for k in sizes:
                _, s = timed(raw_upload, client, f"sweep {k} {r}", files, k)
                seconds[k].append(s)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{os.cpu_count()} cores, load average {load}; bare upload of {len(files)} files, medians of {rounds}"
    )
    base = statistics.median(seconds[FILES_PER_REQUEST])
    for k in sizes:
        med = statistics.median(seconds[k])
        print(f"{k:3d} files a request: {med:.2f} s = {1000 * med / len(files):.1f} ms/file "
              f"(rounds {fmt_rounds(seconds[k])}); ratio to {FILES_PER_REQUEST} a request {med / base:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1, help="rounds per measurement; medians are printed")
    parser.add_argument("--pull-pairs", type=int, default=None, help="annotated pairs to pull (default half)")
    parser.add_argument(
        "--upload-sweep", type=int, default=0, help="only the files-per-request sweep, N files"
    )
    args = parser.parse_args()
    if args.upload_sweep:
        return upload_sweep(args.upload_sweep, args.rounds)
    n = args.pairs
    m: dict[str, list[float]] = {k: [] for k in ("upload", "import", "push", "export", "fetch", "pull")}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with running_server(tmp / "ls") as (server, client):
            candidates = tmp / "candidates"
            write_candidates(candidates, n)
            rows = pq.read_table(candidates / "candidates.parquet").to_pylist()
            files = [(f"{r['pair_id']}_{i}.png", r[f"image_{i}"]) for r in rows for i in (0, 1)]
            for r in range(args.rounds):
                urls, seconds = timed(raw_upload, client, f"bench raw upload {r}", files)
                m["upload"].append(seconds)
                print(f"round {r}: bare upload of {len(files)} files {seconds:.1f} s", flush=True)
                tasks = [
                    {
                        "data": {
                            "pair_id": row["pair_id"],
                            "prompt": row["prompt"],
                            "image_0": urls[2 * k],
                            "image_1": urls[2 * k + 1],
                        }
                    }
                    for k, row in enumerate(rows)
                ]
                raw_project = client.create_project(f"bench raw import {r}", LABEL_CONFIG, 1)
                start = time.perf_counter()
                for i in range(0, n, 1000):
                    client.import_tasks(raw_project, tasks[i : i + 1000])
                m["import"].append(time.perf_counter() - start)
                # Ours: only a client, no files root, so the images go through the upload API.
                remote = LabelStudioClient(server.url, server.token)
                push_parts = Timed(remote, ("upload_files", "file_uploads", "iter_task_data", "import_tasks"))
                pushed, seconds = timed(push_candidates, candidates, f"bench remote {r}", client=remote)
                assert pushed.created == n and pushed.uploaded == 2 * n, pushed
                m["push"].append(seconds)
                print(f"round {r}: push {seconds:.1f} s: {push_parts.describe(seconds)}", flush=True)
            repushed, repush_s = timed(
                push_candidates,
                candidates,
                "bench remote 0",
                client=LabelStudioClient(server.url, server.token),
            )
            assert repushed.created == 0 and repushed.uploaded == 0, repushed

            # An annotated project on the pushed images: n/2 pairs x 2 annotators, imported with the tasks.
            pushed_tasks = sorted(
                (data for _, data in client.iter_task_data(client.find_project("bench remote 0"))),
                key=lambda d: d["pair_id"],
            )
            half = args.pull_pairs or n // 2
            pull_project, annotated = annotated_project(client, "bench remote pull", pushed_tasks[:half])
            references = sorted({t["data"][k] for t in annotated for k in ("image_0", "image_1")})
            for r in range(args.rounds):
                exported, seconds = timed(client.export_tasks, pull_project)
                m["export"].append(seconds)
                total = sum(len(t["annotations"]) for t in exported)
                with ThreadPoolExecutor(max_workers=8) as pool:
                    fetched, seconds = timed(lambda: list(pool.map(client.fetch_file, references)))
                assert len(fetched) == len(references)
                m["fetch"].append(seconds)
                puller = LabelStudioClient(server.url, server.token)
                pull_parts = Timed(puller, ("export_tasks", "fetch_file"))
                pulled, seconds = timed(
                    pull_preferences, "bench remote pull", tmp / f"pulled{r}", client=puller
                )
                # fetch_file runs in 8 threads: its sum is thread-seconds, not wall time.
                print(f"round {r}: pull {seconds:.1f} s: {pull_parts.describe(seconds, threaded=True)}", flush=True)  # fmt: skip
                assert pulled.kept == total, (pulled, total)
                m["pull"].append(seconds)

    med = {k: statistics.median(v) for k, v in m.items()}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average {load}; medians of {args.rounds} rounds; {2 * n} files of "
          f"{len(files[0][1])}-{max(len(f[1]) for f in files)} bytes, {FILES_PER_REQUEST} per upload request")  # fmt: skip
    print(f"remote push {n} pairs: {med['push']:.2f} s ({1000 * med['push'] / n:.2f} ms/pair; rounds {fmt_rounds(m['push'])}) "
          f"| Label Studio import of the same tasks: {med['import']:.2f} s ({1000 * med['import'] / n:.2f} ms/pair) "
          f"| ratio ours/import {med['push'] / med['import']:.2f}x "
          f"| bare upload of the same {2 * n} files: {med['upload']:.2f} s ({1000 * med['upload'] / n:.2f} ms/pair) "
          f"| ratio ours/(upload + import) {med['push'] / (med['upload'] + med['import']):.2f}x "
          f"| idempotent re-push (0 new, 0 uploaded): {repush_s:.2f} s")  # fmt: skip
    print(f"remote pull {total} annotations ({half} pairs, {len(references)} images): {med['pull']:.2f} s "
          f"({1000 * med['pull'] / half:.2f} ms/pair; rounds {fmt_rounds(m['pull'])}) | Label Studio JSON export: "
          f"{med['export']:.2f} s | ratio ours/export {med['pull'] / med['export']:.2f}x | bare fetch of the "
          f"same images (8 threads): {med['fetch']:.2f} s | ratio ours/(export + fetch) "
          f"{med['pull'] / (med['export'] + med['fetch']):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
