"""Push candidate pairs (`candidates.parquet`) to a Label Studio project, idempotently by pair_id.

Images are written as files under the server's local-files root when push can write there (our own
server, or `--files-root`), and a local-files import storage on that folder makes them reachable (the
storage is never synced: the tasks reference the files). Against any other server (e.g. on another
host) they go through Label Studio's own upload API instead (`labeling/upload.py`).

A candidates file is untrusted input (it may come from shared storage). The whole file is checked before
anything happens on the server or the disk: an unreadable file or a wrong column is one error; a bad
row (unsafe or duplicate pair_id, missing prompt, missing or undecodable image) is a rejection with a
reason, so rows = pushed + rejected. Image files are named after the pair_id only when it is a plain
name (letters, digits, `.`, `_`, `-`); each path is resolved and checked to lie under the project's
image folder before it is written, and the write does not follow symlinks.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from canvas.core.atomic import write_text_atomic
from canvas.core.errors import CanvasError
from canvas.core.formats.candidates import IMAGE_COLUMNS, read_candidates_table
from canvas.labeling.client import LabelStudioClient, connect
from canvas.labeling.config import PushConfig
from canvas.labeling.schema import CHOICES, LABEL_CONFIG, ImageScorer, choice_result

logger = logging.getLogger(__name__)

IMAGES_SUBDIR = "canvas-pairs"
# A pair_id names its image files, so it must be a plain file name: no separators, no leading dot.
SAFE_PAIR_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "GIF"}  # what a browser shows in the labeling page
MAX_PIXELS = 64_000_000


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


def summarize_rejections(rejected: list[dict[str, Any]]) -> list[str]:
    """One line per reason: how many rows, and a few of their pair_ids (repr, so odd bytes show)."""
    by_reason: dict[str, list[str]] = {}
    for record in rejected:
        by_reason.setdefault(record["reason"], []).append(repr(record["pair_id"])[:60])
    return [f"{len(ids)} x {reason} (e.g. {', '.join(ids[:3])})" for reason, ids in sorted(by_reason.items())]


@dataclass
class Candidates:
    """The rows that can be pushed (first row per pair_id) and the rejected ones, with reasons."""

    rows: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    total: int
    path: Path


def read_candidates(path: Path) -> Candidates:
    """Read and check a candidates Parquet (a folder means `folder/candidates.parquet`).

    Raises CanvasError (one line) for a file that cannot be used at all; bad rows are rejections.
    """
    table, path = read_candidates_table(path)
    good: dict[str, dict[str, Any]] = {}
    rejected: list[dict[str, Any]] = []
    for index, row in enumerate(table.to_pylist()):
        if row["pair_id"] is not None:
            row["pair_id"] = str(row["pair_id"])
        reason = _row_problem(row) or (
            "duplicate pair_id (an earlier row with it is kept)" if row["pair_id"] in good else None
        )
        if reason:
            rejected.append({"row": index, "pair_id": row["pair_id"], "reason": reason})
        else:
            good[row["pair_id"]] = row | {"_row": index}
    return Candidates(list(good.values()), rejected, table.num_rows, path)


def _row_problem(row: dict[str, Any]) -> str | None:
    """Why this row cannot be pushed, or None."""
    pair_id = row["pair_id"]
    if pair_id is None:
        return "pair_id is missing"
    if not SAFE_PAIR_ID.fullmatch(pair_id):
        # It names the image files: anything but a plain name (../, /abs, NUL, newline) is refused.
        return (
            "pair_id is not a plain name (letters, digits, '.', '_', '-'; at most 128; not starting with '.')"
        )
    if row["prompt"] is None:
        return "prompt is missing"
    for column in IMAGE_COLUMNS:
        problem = _image_problem(row[column])
        if problem:
            return f"{column} {problem}"
    return None


def _image_problem(data: bytes | None) -> str | None:
    """Why these bytes are not an image a browser can show (checked without decoding the pixels)."""
    from PIL import Image

    if data is None:
        return "is missing"
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in IMAGE_FORMATS:
                return f"is {image.format}, not one of {sorted(IMAGE_FORMATS)}"
            if image.width * image.height > MAX_PIXELS:
                return f"is {image.width}x{image.height}, over {MAX_PIXELS // 1_000_000} Mpx"
            image.verify()
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "not an image"
        return f"is not a readable image ({type(exc).__name__})"
    return None


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
    """The URL Label Studio serves `path` at; an error for a path (resolved) outside the root."""
    root, full = Path(files_root).resolve(), Path(path).resolve()
    if not full.is_relative_to(root):
        raise CanvasError(f"{path} is not under the local-files root {files_root}")
    return f"/data/local-files/?d={quote(full.relative_to(root).as_posix())}"


def plan_image_paths(
    rows: list[dict[str, Any]], folder: Path, root: Path
) -> tuple[dict[str, tuple[Path, Path]], list[dict[str, Any]]]:
    """Where each pair's two images go, every path resolved and checked to lie in `folder` under `root`.

    Runs before anything is written. A path that resolves elsewhere (an existing symlink) is a rejection.
    """
    folder = folder.resolve()
    if not folder.is_relative_to(root.resolve()):
        raise CanvasError(f"the image folder {folder} is not under the local-files root {root}")
    paths: dict[str, tuple[Path, Path]] = {}
    rejected: list[dict[str, Any]] = []
    for row in rows:
        pair = tuple((folder / f"{row['pair_id']}_{i}.png").resolve() for i in (0, 1))
        if all(p.parent == folder for p in pair):
            paths[row["pair_id"]] = pair  # type: ignore[assignment]
        else:
            reason = "image path leaves the project's image folder (an existing symlink?)"
            rejected.append({"row": row["_row"], "pair_id": row["pair_id"], "reason": reason})
    return paths, rejected


def _write_images(rows: list[dict[str, Any]], paths: dict[str, tuple[Path, Path]]) -> None:
    """Write each new pair's two images at its checked path.

    Only pairs not yet imported come here, and the import follows the writes, so a push killed midway
    rewrites its files on the next run: a plain write suffices (one syscall set per file matters at 20k
    files). O_NOFOLLOW: a symlink planted after the check is not followed.
    """
    for row in rows:
        for path, data in zip(paths[row["pair_id"]], (row["image_0"], row["image_1"]), strict=True):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)


def write_rejected(path: Path | None, rejected: list[dict[str, Any]]) -> None:
    """The rejected rows as JSON lines (row, pair_id, reason), written whole or not at all."""
    if path is None:
        return
    write_text_atomic(
        path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in sorted(rejected, key=lambda r: r["row"]))
    )


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


def _task(row: dict[str, Any], urls: tuple[str, str], prediction: dict[str, Any] | None) -> dict[str, Any]:
    """One Label Studio task: the pair's prompt and its two images' URLs on the server."""
    task: dict[str, Any] = {
        "data": {"pair_id": row["pair_id"], "prompt": row["prompt"], "image_0": urls[0], "image_1": urls[1]}
    }
    if row.get("model"):
        task["data"]["model"] = row["model"]
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
    scorer: ImageScorer | None = None,
    files_root: Path | None = None,
    data_dir: Path | None = None,
    batch_size: int = 1000,
    client: LabelStudioClient | None = None,
    rejected_path: Path | None = None,
) -> PushResult:
    """Create or reuse the project, place the images, import the pairs it lacks (keyed by pair_id).

    The candidates are checked first (nothing is created for an unusable file); bad rows are rejected
    with reasons (written to `rejected_path` as JSON lines when given). Gold pairs get a ground-truth
    annotation (by the token's user) when their task is created. `scorer` (e.g.
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
    # The local-files root when we can write into it (our own server, or --files-root); otherwise the
    # images go through Label Studio's upload API, which works against a server on any host.
    local_root = files_root or server_files_root
    root = Path(local_root).resolve() if local_root is not None else None
    if root is not None:
        folder = project_images_dir(root, config.project)
        paths, unsafe = plan_image_paths(found.rows, folder, root)
    else:
        paths, unsafe = {row["pair_id"]: None for row in found.rows}, []
    rejected = found.rejected + unsafe
    rows = [row for row in found.rows if row["pair_id"] in paths]
    write_rejected(config.rejected, rejected)
    if not rows:
        raise CanvasError(
            f"no pair to push in {found.path}: all {found.total} rows rejected "
            f"({summarize_rejections(rejected)[0] if rejected else 'the file is empty'})"
        )
    skipped_gold = sorted(set(gold_answers) - set(paths))
    if skipped_gold:
        logger.warning("%d gold pairs were rejected, so not pushed: %s", len(skipped_gold), skipped_gold[:5])

    project_id = ensure_project(client, config.project, config.overlap)
    uploader = None
    if root is None:
        from canvas.labeling.upload import Uploader

        uploader = Uploader(client, project_id)
    elif str(folder) not in client.local_storage_paths(project_id):
        folder.mkdir(parents=True, exist_ok=True)
        client.create_local_storage(project_id, str(folder), title=f"canvas pairs: {config.project}")

    existing = {str(data.get("pair_id")) for _, data in client.iter_task_data(project_id)}
    new_rows = [row for row in rows if row["pair_id"] not in existing]
    predictions = _predictions(new_rows, scorer) if scorer is not None and new_rows else {}

    batches = [new_rows[i : i + config.batch_size] for i in range(0, len(new_rows), config.batch_size)]
    created: dict[str, int] = {}
    # The next batch's images are written while the server imports this one (file writes and HTTP
    # both wait on the OS, so one helper thread overlaps them).
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = writer.submit(_write_images, batches[0], paths) if batches and uploader is None else None
        for index, batch in enumerate(batches):
            if uploader is not None:
                urls = uploader.place(batch)
            else:
                pending.result()
                if index + 1 < len(batches):
                    pending = writer.submit(_write_images, batches[index + 1], paths)
                urls = {
                    r["pair_id"]: tuple(local_file_url(root, p) for p in paths[r["pair_id"]]) for r in batch
                }
            tasks = [_task(row, urls[row["pair_id"]], predictions.get(row["pair_id"])) for row in batch]
            task_ids = client.import_tasks(project_id, tasks)
            if len(task_ids) != len(batch):
                raise CanvasError(f"Label Studio created {len(task_ids)} tasks for a batch of {len(batch)}")
            created.update(zip((row["pair_id"] for row in batch), task_ids, strict=True))
            logger.info("imported %d / %d new pairs", len(created), len(new_rows))

    already = [p for p in gold_answers if p not in created and p in paths]
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
        rows=found.total,
        created=len(created),
        existing=len(rows) - len(new_rows),
        gold=gold_count,
        predictions=len(predictions),
        rejected=rejected,
        uploaded=None if uploader is None else uploader.uploaded,
    )
