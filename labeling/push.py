"""Push candidate pairs (`candidates.parquet`) to a Label Studio project, idempotently by pair_id.

The candidates are checked first (`labeling/candidates.py`). Images are written as files under the
server's local-files root when push can write there (our own server, or `--files-root`;
`labeling/local_files.py`). Against any other server (e.g. on another host) they go through Label
Studio's own upload API instead (`labeling/upload.py`). Then the tasks the project lacks are imported.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canvas.core.errors import CanvasError
from canvas.labeling.candidates import read_candidates, read_gold, summarize_rejections, write_rejected
from canvas.labeling.client import LabelStudioClient, connect
from canvas.labeling.config import PushConfig
from canvas.labeling.local_files import local_file_url, plan_image_paths, project_images_dir, write_images
from canvas.labeling.schema import (
    GOLD_META_KEY,
    LABEL_CONFIG,
    ImageScorer,
    choice_result,
    pairs_config_problem,
)

logger = logging.getLogger(__name__)


@dataclass
class PushResult:
    project_id: int
    url: str
    rows: int
    created: int
    existing: int
    gold: int
    predictions: int
    rejected: list[dict[str, Any]] = field(default_factory=list)
    uploaded: int | None = None  # files sent through the upload API; None: images went to local files

    def describe(self) -> str:
        pushed = self.created + self.existing
        text = (
            f"project {self.project_id} at {self.url}: {self.rows} rows = {pushed} pushed + "
            f"{len(self.rejected)} rejected; {self.created} tasks created, {self.existing} already there, "
            f"{self.gold} gold, {self.predictions} pre-labels"
        )
        if self.uploaded is not None:
            text += f"; images through the upload API: {self.uploaded} files uploaded, the rest already there"
        return text + "".join(f"\nrejected: {line}" for line in summarize_rejections(self.rejected))


def _predictions(rows: list[dict[str, Any]], scorer: ImageScorer) -> dict[str, dict[str, Any]]:
    """Pre-labels: the image the scorer rates higher, with P(left better) = sigmoid(r0 - r1)."""
    out = {}
    for start in range(0, len(rows), 64):
        chunk = rows[start : start + 64]
        images = [data for row in chunk for data in (row["image_0"], row["image_1"])]
        prompts = [row["prompt"] for row in chunk for _ in range(2)]
        scores = scorer(images, prompts)
        for i, row in enumerate(chunk):
            r0, r1 = scores[2 * i], scores[2 * i + 1]
            choice = "tie" if abs(r0 - r1) < 1e-6 else ("left" if r0 > r1 else "right")
            p_left = 1.0 / (1.0 + math.exp(-(r0 - r1)))
            out[row["pair_id"]] = {
                "model_version": scorer.name,
                "score": max(p_left, 1.0 - p_left),
                "result": choice_result(choice),
            }
    return out


def _task(
    row: dict[str, Any], urls: tuple[str, str], prediction: dict[str, Any] | None, gold: str | None
) -> dict[str, Any]:
    """One Label Studio task: the pair's prompt and its two images' URLs on the server.

    A gold pair's answer goes in the task's `meta` (not in `data`, which the labeling page shows, and not
    as an annotation, which would count toward the overlap and keep the task from annotators).
    """
    task: dict[str, Any] = {
        "data": {"pair_id": row["pair_id"], "prompt": row["prompt"], "image_0": urls[0], "image_1": urls[1]}
    }
    if row.get("model"):
        task["data"]["model"] = row["model"]
    if prediction is not None:
        task["predictions"] = [prediction]
    if gold is not None:
        task["meta"] = {GOLD_META_KEY: gold}
    return task


def _set_gold_on_existing(
    client: LabelStudioClient, existing: dict[str, dict[str, Any]], gold: dict[str, str]
) -> int:
    """Give the tasks already in the project the gold answer the file has for them (a push re-run after a
    failure, or --gold added later); returns how many were set or changed."""
    changed = 0
    for pair_id, answer in sorted(gold.items()):
        task = existing.get(pair_id)
        if task is None or task["meta"].get(GOLD_META_KEY) == answer:
            continue
        before = task["meta"].get(GOLD_META_KEY)
        client.update_task_meta(task["id"], task["meta"] | {GOLD_META_KEY: answer})
        logger.info("gold answer of pair %s already in the project: %s -> %s", pair_id, before, answer)
        changed += 1
    if changed:
        logger.warning("set the gold answer of %d pairs that were already in the project", changed)
    return changed


def ensure_project(client: LabelStudioClient, title: str, overlap: int) -> int:
    """The project with this title (its overlap updated), or a new one with the pairwise template."""
    project_id, created = client.find_or_create_project(
        title, LABEL_CONFIG, overlap, description="Pairwise preferences: which image fits the prompt better?"
    )
    if created:
        return project_id
    project = client.get_project(project_id)
    problem = pairs_config_problem(project.get("label_config") or "")
    if problem:  # someone's own project of that name: pairs pushed there could not be labeled or pulled
        raise CanvasError(
            f"project {title!r} (id {project_id}) is not a canvas pairs project: {problem}; "
            "push to another --project title"
        )
    if project["maximum_annotations"] != overlap:
        client.update_project(project_id, maximum_annotations=overlap, overlap_cohort_percentage=100)
    return project_id


def push_candidates(
    candidates: Path,
    project: str,
    url: str | None = None,
    token: str | None = None,
    overlap: int = 1,
    gold: Path | dict[str, str] | None = None,
    scorer: ImageScorer | None = None,
    files_root: Path | None = None,
    data_dir: Path | None = None,
    batch_size: int = 1000,
    client: LabelStudioClient | None = None,
    rejected_path: Path | None = None,
) -> PushResult:
    """Create or reuse the project, place the images, import the pairs it lacks (keyed by pair_id).

    The candidates are checked first (nothing is created for an unusable file); bad rows are rejected
    with reasons (written to `rejected_path` as JSON lines when given). A gold pair's answer is stored in
    its task's meta, in the same import as the task; a task already there gets it set. `scorer` (e.g.
    `canvas.rlhf.rewards.EncodedImageScorer("brightness")`) adds pre-labels.
    """
    config = PushConfig(
        Path(candidates),
        project,
        url,
        data_dir,
        files_root,
        overlap,
        None,
        getattr(scorer, "name", None),
        batch_size,
        rejected_path,
    )
    found = read_candidates(config.candidates)
    gold_answers = gold if isinstance(gold, dict) else read_gold(gold)
    unknown_gold = sorted(set(gold_answers) - {r["pair_id"] for r in found.rows + found.rejected})
    if unknown_gold:
        raise CanvasError(f"gold pairs not in the candidates: {unknown_gold[:5]}")
    if client is None:
        client, server_files_root = connect(url, token, data_dir)
    else:
        server_files_root = None
    if not found.rows:
        write_rejected(config.rejected, found.rejected)
        raise CanvasError(
            f"no pair to push in {found.path}: all {found.total} rows rejected "
            f"({summarize_rejections(found.rejected)[0] if found.rejected else 'the file is empty'})"
        )
    project_id = ensure_project(client, config.project, config.overlap)
    # The local-files root when we can write into it (our own server, or --files-root); otherwise the
    # images go through Label Studio's upload API, which works against a server on any host.
    local_root = files_root or server_files_root
    root = Path(local_root).resolve() if local_root is not None else None
    if root is not None:
        folder = project_images_dir(root, project_id, config.project)
        paths, unsafe = plan_image_paths(found.rows, folder, root)
    else:
        paths, unsafe = {row["pair_id"]: None for row in found.rows}, []
    rejected = found.rejected + unsafe
    rows = [row for row in found.rows if row["pair_id"] in paths]
    write_rejected(config.rejected, rejected)
    if not rows:
        raise CanvasError(
            f"no pair to push in {found.path}: all {found.total} rows rejected "
            f"({summarize_rejections(rejected)[0]})"
        )
    skipped_gold = sorted(set(gold_answers) - set(paths))
    if skipped_gold:
        logger.warning("%d gold pairs were rejected, so not pushed: %s", len(skipped_gold), skipped_gold[:5])
    gold_answers = {p: a for p, a in gold_answers.items() if p in paths}

    uploader = None
    if root is None:
        from canvas.labeling.upload import Uploader

        uploader = Uploader(client, project_id)
    elif str(folder) not in client.local_storage_paths(project_id):
        folder.mkdir(parents=True, exist_ok=True)
        client.create_local_storage(project_id, str(folder), title=f"canvas pairs: {config.project}")

    existing = {str(t["data"].get("pair_id")): t for t in client.iter_tasks(project_id)}
    gold_count = _set_gold_on_existing(client, existing, gold_answers)
    new_rows = [row for row in rows if row["pair_id"] not in existing]
    predictions = _predictions(new_rows, scorer) if scorer is not None and new_rows else {}

    batches = [new_rows[i : i + config.batch_size] for i in range(0, len(new_rows), config.batch_size)]
    created: dict[str, int] = {}
    # The next batch's images are written while the server imports this one (file writes and HTTP
    # both wait on the OS, so one helper thread overlaps them).
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = writer.submit(write_images, batches[0], paths) if batches and uploader is None else None
        for index, batch in enumerate(batches):
            if uploader is not None:
                urls = uploader.place(batch)
            else:
                pending.result()
                if index + 1 < len(batches):
                    pending = writer.submit(write_images, batches[index + 1], paths)
                urls = {
                    r["pair_id"]: tuple(local_file_url(root, p) for p in paths[r["pair_id"]]) for r in batch
                }
            tasks = [
                _task(
                    row,
                    urls[row["pair_id"]],
                    predictions.get(row["pair_id"]),
                    gold_answers.get(row["pair_id"]),
                )
                for row in batch
            ]
            task_ids = client.import_tasks(project_id, tasks)
            if len(task_ids) != len(batch):
                raise CanvasError(f"Label Studio created {len(task_ids)} tasks for a batch of {len(batch)}")
            created.update(zip((row["pair_id"] for row in batch), task_ids, strict=True))
            gold_count += sum(row["pair_id"] in gold_answers for row in batch)
            logger.info("imported %d / %d new pairs", len(created), len(new_rows))

    return PushResult(
        project_id=project_id,
        url=client.url,
        rows=found.total,
        created=len(created),
        existing=len(rows) - len(new_rows),
        gold=gold_count,
        predictions=len(predictions),
        rejected=rejected,
        uploaded=None if uploader is None else uploader.uploaded,
    )
