"""Push candidate pairs (`candidates.parquet`) to a Label Studio project, idempotently by pair_id.

Images are written as PNG files under the server's local-files root and a local-files import storage
on that folder makes them reachable (the storage is never synced: the tasks reference the files).
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from canvas.core.errors import CanvasError
from canvas.labeling.client import LabelStudioClient, connect
from canvas.labeling.config import PushConfig
from canvas.labeling.schema import CHOICES, LABEL_CONFIG, choice_result

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("pair_id", "prompt", "image_0", "image_1")
IMAGES_SUBDIR = "canvas-pairs"


@dataclass
class PushResult:
    project_id: int
    url: str
    created: int
    existing: int
    gold: int
    predictions: int
    duplicates_in_file: int

    def describe(self) -> str:
        return (
            f"project {self.project_id} at {self.url}: {self.created} tasks created, {self.existing} already "
            f"there, {self.gold} gold, {self.predictions} pre-labels, {self.duplicates_in_file} duplicate "
            f"pair_ids in the file skipped"
        )


def read_candidates(path: Path) -> list[dict[str, Any]]:
    """Rows of a candidates Parquet (a folder means `folder/candidates.parquet`)."""
    path = Path(path)
    if path.is_dir():
        path = path / "candidates.parquet"
    if not path.exists():
        raise CanvasError(f"no candidates file at {path} (make one with `canvas generate`)")
    table = pq.read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise CanvasError(f"{path} lacks columns {missing}; expected {list(REQUIRED_COLUMNS)}")
    return table.select(list(REQUIRED_COLUMNS)).to_pylist()


def read_gold(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        gold = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CanvasError(f"cannot read gold file {path}: {exc}") from exc
    if not isinstance(gold, dict):
        raise CanvasError(f'gold file {path} must be a JSON object {{pair_id: "left"|"right"|"tie"}}')
    bad = {k: v for k, v in gold.items() if v not in CHOICES}
    if bad:
        raise CanvasError(
            f"gold file {path}: answers must be one of {CHOICES}; bad: {dict(list(bad.items())[:3])}"
        )
    return {str(k): str(v) for k, v in gold.items()}


def project_images_dir(files_root: Path, project: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", project).strip("-") or "project"
    return files_root / IMAGES_SUBDIR / slug


def local_file_url(files_root: Path, path: Path) -> str:
    # String prefix rather than Path.relative_to: this runs 20,000 times for 10k pairs.
    root, full = f"{files_root.as_posix().rstrip('/')}/", path.as_posix()
    if not full.startswith(root):
        raise CanvasError(f"{path} is not under the local-files root {files_root}")
    return f"/data/local-files/?d={full[len(root) :]}"


def _write_images(rows: list[dict[str, Any]], folder: Path) -> dict[str, tuple[Path, Path]]:
    """Write each new pair's two PNGs; returns pair_id -> (left path, right path).

    Only pairs not yet imported come here, and the import follows the writes, so a push killed midway
    rewrites its files on the next run: a plain write suffices (one syscall set per file matters at 20k
    files).
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for row in rows:
        pair = (folder / f"{row['pair_id']}_0.png", folder / f"{row['pair_id']}_1.png")
        for path, data in zip(pair, (row["image_0"], row["image_1"]), strict=True):
            with open(path, "wb") as f:
                f.write(data)
        paths[row["pair_id"]] = pair
    return paths


def _predictions(rows: list[dict[str, Any]], reward_name: str) -> dict[str, dict[str, Any]]:
    """Pre-labels: the image the reward scores higher, with P(left better) = sigmoid(r0 - r1)."""
    import numpy as np
    import torch
    from PIL import Image

    from canvas.rlhf.rewards import load_reward, score_checked

    reward = load_reward(reward_name)
    out = {}
    for start in range(0, len(rows), 64):
        chunk = rows[start : start + 64]
        images = []
        for row in chunk:
            for data in (row["image_0"], row["image_1"]):
                arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0
                images.append(torch.from_numpy(arr).permute(2, 0, 1))
        prompts = [row["prompt"] for row in chunk for _ in range(2)]
        scores = score_checked(reward, torch.stack(images), prompts).view(-1, 2).tolist()
        for row, (r0, r1) in zip(chunk, scores, strict=True):
            choice = "tie" if abs(r0 - r1) < 1e-6 else ("left" if r0 > r1 else "right")
            p_left = 1.0 / (1.0 + math.exp(-(r0 - r1)))
            out[row["pair_id"]] = {
                "model_version": str(getattr(reward, "name", reward_name)),
                "score": max(p_left, 1.0 - p_left),
                "result": choice_result(choice),
            }
    return out


def _task(
    row: dict[str, Any], paths: tuple[Path, Path], root: Path, prediction: dict[str, Any] | None
) -> dict[str, Any]:
    """One Label Studio task: the pair's prompt and its two images as local-files URLs."""
    task: dict[str, Any] = {
        "data": {
            "pair_id": row["pair_id"],
            "prompt": row["prompt"],
            "image_0": local_file_url(root, paths[0]),
            "image_1": local_file_url(root, paths[1]),
        }
    }
    if prediction is not None:
        task["predictions"] = [prediction]
    return task


def ensure_project(client: LabelStudioClient, title: str, overlap: int) -> int:
    """The project with this title (its overlap updated), or a new one with the pairwise template."""
    project_id = client.find_project(title)
    if project_id is None:
        return client.create_project(
            title,
            LABEL_CONFIG,
            overlap,
            description="Pairwise preferences: which image fits the prompt better?",
        )
    if client.get_project(project_id)["maximum_annotations"] != overlap:
        client.update_project(project_id, maximum_annotations=overlap, overlap_cohort_percentage=100)
    return project_id


def push_candidates(
    candidates: Path,
    project: str,
    url: str | None = None,
    token: str | None = None,
    overlap: int = 1,
    gold: Path | dict[str, str] | None = None,
    reward: str | None = None,
    files_root: Path | None = None,
    data_dir: Path | None = None,
    batch_size: int = 1000,
    client: LabelStudioClient | None = None,
) -> PushResult:
    """Create or reuse the project, place the images, import the pairs it lacks (keyed by pair_id).

    Gold pairs get a ground-truth annotation (by the token's user) when their task is created.
    """
    config = PushConfig(
        Path(candidates), project, url, data_dir, files_root, overlap, None, reward, batch_size
    )
    if client is None:
        client, server_files_root = connect(url, token, data_dir)
    else:
        server_files_root = None
    if files_root is None and server_files_root is None:
        raise CanvasError(
            f"cannot tell where Label Studio at {client.url} serves local files from: pass --files-root "
            "(its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)"
        )
    root = Path(files_root or server_files_root).resolve()
    gold_answers = gold if isinstance(gold, dict) else read_gold(gold)

    all_rows = read_candidates(config.candidates)
    unique: dict[str, dict[str, Any]] = {}
    for row in all_rows:
        unique.setdefault(str(row["pair_id"]), row)
    rows = list(unique.values())
    unknown_gold = sorted(set(gold_answers) - set(unique))
    if unknown_gold:
        raise CanvasError(f"gold pairs not in the candidates: {unknown_gold[:5]}")

    project_id = ensure_project(client, config.project, config.overlap)
    folder = project_images_dir(root, config.project)
    if str(folder) not in client.local_storage_paths(project_id):
        folder.mkdir(parents=True, exist_ok=True)
        client.create_local_storage(project_id, str(folder), title=f"canvas pairs: {config.project}")

    existing = {str(data.get("pair_id")) for _, data in client.iter_task_data(project_id)}
    new_rows = [row for row in rows if row["pair_id"] not in existing]
    predictions = _predictions(new_rows, reward) if reward and new_rows else {}

    batches = [new_rows[i : i + config.batch_size] for i in range(0, len(new_rows), config.batch_size)]
    created: dict[str, int] = {}
    # The next batch's images are written while the server imports this one (file writes and HTTP
    # both wait on the OS, so one helper thread overlaps them).
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = writer.submit(_write_images, batches[0], folder) if batches else None
        for index, batch in enumerate(batches):
            paths = pending.result()
            if index + 1 < len(batches):
                pending = writer.submit(_write_images, batches[index + 1], folder)
            tasks = [
                _task(row, paths[row["pair_id"]], root, predictions.get(row["pair_id"])) for row in batch
            ]
            task_ids = client.import_tasks(project_id, tasks)
            if len(task_ids) != len(batch):
                raise CanvasError(f"Label Studio created {len(task_ids)} tasks for a batch of {len(batch)}")
            created.update(zip((row["pair_id"] for row in batch), task_ids, strict=True))
            logger.info("imported %d / %d new pairs", len(created), len(new_rows))

    already = [p for p in gold_answers if p not in created]
    if already:
        logger.warning(
            "%d gold pairs were already in the project: their ground truth is left as it is", len(already)
        )
    gold_count = 0
    for pair_id, answer in sorted(gold_answers.items()):
        if pair_id in created:
            client.create_annotation(created[pair_id], choice_result(answer), ground_truth=True)
            gold_count += 1
    return PushResult(
        project_id=project_id,
        url=client.url,
        created=len(created),
        existing=len(rows) - len(new_rows),
        gold=gold_count,
        predictions=len(predictions),
        duplicates_in_file=len(all_rows) - len(rows),
    )
