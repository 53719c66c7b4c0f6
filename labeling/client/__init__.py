"""Every Label Studio call of the project, behind one client with retries and clear errors.

`base.py` holds the one place that talks to the server (timeouts, retries, error messages); the calls
are grouped by concern beside it: `users.py`, `projects.py` (projects, storages, tasks, annotations,
exports) and `files.py` (uploads and served files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from canvas.core.errors import CanvasError
from canvas.labeling.client.base import ClientBase, UnreadableFile
from canvas.labeling.client.files import FilesMixin
from canvas.labeling.client.projects import ProjectsMixin
from canvas.labeling.client.users import UsersMixin
from canvas.labeling.server import STATE_FILE, default_data_dir, read_token

__all__ = ["ClientBase", "LabelStudioClient", "UnreadableFile", "connect"]


class LabelStudioClient(UsersMixin, ProjectsMixin, FilesMixin):
    """Every Label Studio call we make: users, projects and tasks, uploaded files (one mixin each), over
    `ClientBase` (connection, retries, timeouts, one error style; its docstring lists the arguments)."""


def connect(
    url: str | None = None, token: str | None = None, data_dir: Path | None = None, **client_kwargs: Any
) -> tuple[LabelStudioClient, Path | None]:
    """A client for `url`, or for the server `canvas label server start` runs on `data_dir` (default).

    Also returns that server's local-files root when the URL is that server's (None otherwise), so
    push can place images where the server serves them from.
    """
    data_dir = Path(data_dir or default_data_dir()).expanduser().resolve()
    state_path = data_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if url is None:
        if not state.get("url"):
            raise CanvasError(
                f"no --url given and no server was started in {data_dir}: run `canvas label server start` "
                "or pass --url"
            )
        url = state["url"]
    files_root = Path(state["files_root"]) if state.get("url") == url.rstrip("/") else None
    return LabelStudioClient(url, token or read_token(data_dir, url), **client_kwargs), files_root
