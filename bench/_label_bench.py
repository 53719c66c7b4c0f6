"""What the Label Studio benchmarks share: a real server with an admin client, small candidate images,
an annotated project to pull, timing and printing helpers."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from canvas.labeling.client import LabelStudioClient
from canvas.labeling.schema import CHOICES, LABEL_CONFIG, choice_result
from canvas.labeling.server import LabelStudioServer


@contextmanager
def running_server(folder: Path) -> Iterator[tuple[LabelStudioServer, LabelStudioClient]]:
    """A Label Studio server on 127.0.0.1 with its data in `folder`, and an admin client; always stopped."""
    server = LabelStudioServer(folder)
    server.start()
    try:
        yield server, LabelStudioClient(server.url, server.token)
    finally:
        server.stop()


def _png(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_candidates(path: Path, pairs: int) -> None:
    """`candidates.parquet` of `pairs` pairs of small random PNGs (the benchmarks time labeling I/O)."""
    rng = np.random.default_rng(0)
    pool = [_png(rng) for _ in range(64)]  # distinct bytes per file are not needed for I/O timing
    rows = {
        "pair_id": [f"bench-{i:06d}" for i in range(pairs)],
        "prompt": [f"prompt number {i}" for i in range(pairs)],
        "image_0": [pool[i % 64] for i in range(pairs)],
        "image_1": [pool[(i * 7 + 3) % 64] for i in range(pairs)],
    }
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path / "candidates.parquet")


def annotated_project(client: LabelStudioClient, name: str, task_data: list[dict]) -> tuple[int, list[dict]]:
    """Project `name` with every task annotated by two annotators (votes cycling left/right/tie), imported
    inline with the tasks; returns the project id and the imported tasks."""
    u1 = client.create_user("bench1@bench.local", "bench1")
    u2 = client.create_user("bench2@bench.local", "bench2")
    project = client.create_project(name, LABEL_CONFIG, 2)

    def vote(user: int, choice: str) -> dict:
        # Imported annotations are ground truth unless told otherwise (Label Studio's default).
        return {
            "result": choice_result(choice),
            "completed_by": user,
            "lead_time": 3.0,
            "ground_truth": False,
        }

    annotated = [
        {"data": data, "annotations": [vote(u1, CHOICES[i % 3]), vote(u2, CHOICES[(i // 3) % 3])]}
        for i, data in enumerate(task_data)
    ]
    for i in range(0, len(annotated), 500):
        client.import_tasks(project, annotated[i : i + 500])
    return project, annotated


def timed(fn, *args, **kwargs):  # noqa: ANN001, ANN201 - a tiny timing helper
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def fmt_rounds(values: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)
