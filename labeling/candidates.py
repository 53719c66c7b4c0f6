"""Check a candidates file before anything is pushed: the rows that can go, and each rejected row's reason.

A candidates file is untrusted input (it may come from shared storage). The whole file is checked before
anything happens on the server or the disk: an unreadable file or a wrong column is one error; a bad
row (unsafe or duplicate pair_id, missing prompt, missing or undecodable image) is a rejection with a
reason, so rows = pushed + rejected. A pair_id names its image files, so it must be a plain name
(letters, digits, `.`, `_`, `-`).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canvas.core.atomic import write_text_atomic
from canvas.core.errors import CanvasError
from canvas.core.formats.candidates import IMAGE_COLUMNS, read_candidates_table
from canvas.labeling.schema import CHOICES

# A pair_id names its image files, so it must be a plain file name: no separators, no leading dot.
SAFE_PAIR_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "GIF"}  # what a browser shows in the labeling page
MAX_PIXELS = 64_000_000


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


def write_rejected(path: Path | None, rejected: list[dict[str, Any]]) -> None:
    """The rejected rows as JSON lines (row, pair_id, reason), written whole or not at all."""
    if path is None:
        return
    write_text_atomic(
        path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in sorted(rejected, key=lambda r: r["row"]))
    )
