"""Pull a project's annotations into a Pick-a-Pic v2 style preference dataset.

Writes, in the output folder:
- `preferences.parquet`: one row per pair with at least one kept vote, in Pick-a-Pic v2's columns and
  types (`labeling/pickapic.py`: caption, jpg_0, jpg_1 as JPEG, label_0, label_1 = 1/0, 0/1 or 0.5/0.5
  for a tie, best_image_uid, ..., created_at), then ours: pair_id, num_votes, agreement,
  annotator_ids, votes_left, votes_right, votes_tie.
- `annotators.json`: per annotator count, agreement with the majority, gold accuracy, median time; the
  project's Krippendorff's alpha; counts that add up (annotations = kept + rejected + gold).
- `rejected.jsonl`: every annotation not used as a vote, with the reason (malformed, skipped, superseded,
  its annotator deleted, or an image of its pair that cannot be read).

Gold answers are read from each task's meta (`canvas_gold`, set by push), and from ground-truth
annotations of projects pushed by older versions (those are the `gold` annotations of the counts).

The output depends only on the server's annotations, so pulling twice writes identical files.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from canvas.core.atomic import atomic_path, write_text_atomic
from canvas.core.errors import CanvasError
from canvas.core.formats.preferences import PREFERENCES_SCHEMA
from canvas.labeling.client import LabelStudioClient, UnreadableFile, connect
from canvas.labeling.config import PullConfig
from canvas.labeling.pickapic import parse_created_at, pickapic_columns
from canvas.labeling.quality import Vote, annotator_report, krippendorff_alpha_nominal, majority
from canvas.labeling.schema import CHOICES, GOLD_META_KEY, parse_choice

logger = logging.getLogger(__name__)


@dataclass
class PullResult:
    rows: int
    annotations: int
    kept: int
    rejected: int
    gold: int  # ground-truth annotations (projects pushed by older versions)
    alpha: float | None
    output: Path
    gold_pairs: int = 0  # pairs with a known answer

    def describe(self) -> str:
        alpha = "undefined" if self.alpha is None else f"{self.alpha:.3f}"
        return (
            f"{self.rows} pairs -> {self.output / 'preferences.parquet'}; annotations: {self.annotations} = "
            f"{self.kept} kept + {self.rejected} rejected + {self.gold} gold; {self.gold_pairs} gold pairs; "
            f"Krippendorff's alpha {alpha}"
        )


@dataclass
class _Collected:
    votes: list[Vote] = field(default_factory=list)
    gold: dict[str, str] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_ids: dict[str, int] = field(default_factory=dict)
    created_at: dict[int, Any] = field(default_factory=dict)  # annotation id -> UTC time
    annotations: int = 0
    gold_annotations: int = 0

    def reject(self, annotation_id: int, task_id: int, pair_id: Any, annotator: Any, reason: str) -> None:
        """One line of rejected.jsonl: an annotation not used as a vote, and why."""
        self.rejected.append(
            {
                "annotation_id": annotation_id,
                "task_id": task_id,
                "pair_id": pair_id,
                "annotator": annotator,
                "reason": reason,
            }
        )


def collect(tasks: list[dict[str, Any]]) -> _Collected:
    """Split exported annotations into votes, gold answers and rejections (with reasons)."""
    out = _Collected()
    for task in sorted(tasks, key=lambda t: int(t["id"])):
        data = task.get("data") or {}
        pair_id = data.get("pair_id")
        annotations = sorted(task.get("annotations") or [], key=lambda a: int(a["id"]))
        out.annotations += len(annotations)

        def reject(
            annotation: dict[str, Any], reason: str, pair_id: Any = pair_id, task: dict = task
        ) -> None:
            out.reject(
                int(annotation["id"]), int(task["id"]), pair_id, annotation.get("completed_by"), reason
            )

        if not pair_id:
            for annotation in annotations:
                reject(annotation, "task has no pair_id (not pushed by canvas)")
            continue
        pair_id = str(pair_id)
        out.tasks[pair_id], out.task_ids[pair_id] = data, int(task["id"])
        answer = (task.get("meta") or {}).get(GOLD_META_KEY)
        if answer in CHOICES:
            out.gold[pair_id] = answer
        elif answer is not None:
            logger.warning(
                "pair %s: gold answer %r in the task's meta is not one of %s", pair_id, answer, CHOICES
            )
        latest: dict[int, dict[str, Any]] = {}
        for annotation in annotations:
            choice, reason = parse_choice(annotation.get("result"))
            if annotation.get("ground_truth"):
                out.gold_annotations += 1
                if choice is None:
                    reject(annotation, f"ground truth: {reason}")
                    out.gold_annotations -= 1
                else:
                    out.gold.setdefault(pair_id, choice)  # the task's meta, when set, wins
                continue
            if annotation.get("completed_by") is None:
                reject(annotation, "annotator deleted")
            elif annotation.get("was_cancelled"):
                reject(annotation, "skipped by the annotator")
            elif choice is None:
                reject(annotation, reason or "malformed")
            else:
                annotator = int(annotation["completed_by"])
                if annotator in latest:
                    reject(latest[annotator], "superseded by a later annotation of the same annotator")
                latest[annotator] = annotation | {"_choice": choice}
                out.created_at[int(annotation["id"])] = parse_created_at(annotation.get("created_at"))
        for annotator, annotation in latest.items():
            out.votes.append(
                Vote(
                    pair_id,
                    annotator,
                    annotation["_choice"],
                    int(annotation["id"]),
                    annotation.get("lead_time"),
                )
            )
    return out


def read_task_image(
    client: LabelStudioClient, files_root: Path | None, reference: str, cache: dict[str, bytes]
) -> bytes:
    """Read a task image from the local-files root when we can, else fetch it from the server."""
    if reference in cache:
        return cache[reference]
    parsed = urlparse(reference)
    relative = (
        parse_qs(parsed.query).get("d", [None])[0] if parsed.path.startswith("/data/local-files") else None
    )
    data = None
    if files_root is not None and relative:
        path = (files_root / relative).resolve()
        if path.is_relative_to(files_root.resolve()) and path.is_file():
            data = path.read_bytes()
    if data is None:
        data = client.fetch_file(reference)
    cache[reference] = data
    return data


def _read_images(
    client: LabelStudioClient, files_root: Path | None, tasks: list[dict[str, Any]]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """Every image the tasks reference, read by a few threads (file and HTTP reads wait on the OS).

    Returns the images, and why each one that cannot be read could not (a file the server does not have,
    a reference to another host): those are the referencing task's problem. A server that cannot be
    reached still stops the pull.
    """
    references = sorted({str(task.get(key)) for task in tasks for key in ("image_0", "image_1")})

    def read(reference: str) -> bytes | str:
        try:
            return read_task_image(client, files_root, reference, {})
        except UnreadableFile as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = dict(zip(references, pool.map(read, references), strict=True))
    images = {ref: data for ref, data in found.items() if isinstance(data, bytes)}
    return images, {ref: problem for ref, problem in found.items() if isinstance(problem, str)}


def _pair_row(
    client: LabelStudioClient,
    data: dict[str, Any],
    votes: list[Vote],
    images: dict[str, bytes],
    problems: dict[str, str],
    created_at: dict[int, Any],
) -> tuple[dict[str, Any] | None, str | None]:
    """One pair's row of preferences.parquet, or why its images cannot make one."""
    refs = (str(data.get("image_0")), str(data.get("image_1")))
    for i, ref in enumerate(refs):
        if ref in problems:
            return None, f"image_{i} cannot be read: {problems[ref]}"
    label, agreement = majority([v.choice for v in votes])
    counts = Counter(v.choice for v in votes)
    try:
        columns = pickapic_columns(
            label,
            votes,
            (images[refs[0]], images[refs[1]]),
            (str(client.resolve(refs[0])), str(client.resolve(refs[1]))),
            str(data.get("model") or ""),
            created_at,
        )
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "not an image"
        return None, f"an image of the pair cannot be decoded ({type(exc).__name__})"
    row = {"caption": data.get("prompt", "")} | columns
    return row | {
        "num_votes": len(votes),
        "agreement": agreement,
        "annotator_ids": sorted(v.annotator for v in votes),
        "votes_left": counts["left"],
        "votes_right": counts["right"],
        "votes_tie": counts["tie"],
    }, None


def pull_preferences(
    project: str,
    output: Path,
    url: str | None = None,
    token: str | None = None,
    data_dir: Path | None = None,
    files_root: Path | None = None,
    client: LabelStudioClient | None = None,
) -> PullResult:
    """Export the project's annotations and write preferences.parquet, annotators.json, rejected.jsonl."""
    project = PullConfig(project, Path(output), url, data_dir, files_root).project  # validated, stripped
    if client is None:
        client, server_files_root = connect(url, token, data_dir)
        files_root = files_root or server_files_root
    project_id = client.find_project(project)
    if project_id is None:
        raise CanvasError(f"no project titled {project!r} on {client.url}")
    collected = collect(client.export_tasks(project_id))

    by_pair: dict[str, list[Vote]] = defaultdict(list)
    for vote in collected.votes:
        by_pair[vote.pair_id].append(vote)
    rows: list[dict[str, Any]] = []
    images, problems = _read_images(client, files_root, [collected.tasks[p] for p in by_pair])
    for pair_id in sorted(by_pair):
        row, problem = _pair_row(
            client, collected.tasks[pair_id], by_pair[pair_id], images, problems, collected.created_at
        )
        if row is None:  # its votes are rejected with the reason; the rest of the pull goes on
            logger.warning("pair %s: %s", pair_id, problem)
            for vote in by_pair.pop(pair_id):
                collected.reject(
                    vote.annotation_id, collected.task_ids[pair_id], pair_id, vote.annotator, problem
                )
            continue
        rows.append(row | {"pair_id": pair_id})
    collected.votes = [v for v in collected.votes if v.pair_id in by_pair]
    labels = {pair_id: majority([v.choice for v in votes])[0] for pair_id, votes in by_pair.items()}
    per_prompt = Counter(row["caption"] for row in rows)
    for row in rows:
        row["num_example_per_prompt"] = per_prompt[row["caption"]]

    alpha = krippendorff_alpha_nominal({p: [v.choice for v in vs] for p, vs in by_pair.items()})
    emails = {uid: email for email, uid in client.user_ids_by_email().items()}
    report = {
        "project": project,
        "project_id": project_id,
        "url": client.url,
        "pairs_total": len(collected.tasks),
        "pairs_labeled": len(rows),
        "annotations": collected.annotations,
        "kept": len(collected.votes),
        "rejected": len(collected.rejected),
        "gold_annotations": collected.gold_annotations,
        "gold_pairs": len(collected.gold),
        "krippendorff_alpha_nominal": alpha,
        "annotators": annotator_report(collected.votes, labels, collected.gold, emails),
    }

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=PREFERENCES_SCHEMA)
    with atomic_path(output / "preferences.parquet") as tmp:
        pq.write_table(table, tmp)
    write_text_atomic(output / "annotators.json", json.dumps(report, indent=2, sort_keys=True))
    rejected_lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in collected.rejected)
    write_text_atomic(output / "rejected.jsonl", rejected_lines)
    return PullResult(
        rows=len(rows),
        annotations=collected.annotations,
        kept=len(collected.votes),
        rejected=len(collected.rejected),
        gold=collected.gold_annotations,
        alpha=alpha,
        output=output,
        gold_pairs=len(collected.gold),
    )
