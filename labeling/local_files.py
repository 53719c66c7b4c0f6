"""Pair images as files under the server's local-files root (the fast path, for a server whose folder push
can write into: our own, or `--files-root`).

Each path is resolved and checked to lie under the project's image folder before it is written, and the
write does not follow symlinks. A local-files import storage on that folder (never synced: the tasks
reference the files) makes them reachable at `/data/local-files/?d=<relative path>`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from canvas.core.errors import CanvasError

IMAGES_SUBDIR = "canvas-pairs"


def project_images_dir(files_root: Path, project_id: int, title: str) -> Path:
    """`<root>/canvas-pairs/<project id>-<slug of the title>`: the id keeps two projects apart even when their
    titles make the same slug ("coll one", "coll-one", or any two non-Latin titles); the slug is for people.

    Projects pushed before the id was part of the name keep their old folder and its storage (their tasks
    point there); new pairs go to this folder, with a storage of its own.
    """
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", title).strip("-.")[:60] or "project"
    return files_root / IMAGES_SUBDIR / f"{int(project_id)}-{slug}"


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


def write_images(rows: list[dict[str, Any]], paths: dict[str, tuple[Path, Path]]) -> None:
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
