"""Files on the Label Studio server: uploads through its import API, their listing, and fetching any file
it serves (uploaded or local-files) with the token."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from canvas.labeling.client.base import ClientBase, UnreadableFile

_MISSING = (400, 403, 404, 410)  # the server has no such file for us: the referencing task's problem


class FilesMixin(ClientBase):
    """The file calls of `LabelStudioClient`."""

    def file_uploads(self, project_id: int, ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Files uploaded to the project with this token (all, or these ids): id, `file` (its storage name,
        e.g. `upload/3/1a2b3c4d-x.png`), size in bytes."""
        found = self._call(
            "list uploaded files",
            self.sdk.files.list,
            id=project_id,
            all_=ids is None,
            ids=None if ids is None else json.dumps(list(ids)),
            kind="bulk",
            request_options=self._opts("bulk"),
        )
        return [{"id": int(f.id), "file": str(f.file), "size": f.size} for f in found]

    def upload_files(self, project_id: int, files: Sequence[tuple[str, bytes]]) -> list[int]:
        """Upload files to the server's own storage, creating no task (`commit_to_project=false`).

        They are served at `/data/upload/<project>/<8 hex>-<name>` to logged-in users and to the token;
        `file_uploads` finds them by name. Label Studio takes at most 100 files per request.
        """

        # Safe to repeat (a 5xx, a dropped connection): a file stored twice is harmless, since the tasks are
        # imported only after the upload and `Uploader` points them at one stored copy of each name.
        def post() -> httpx.Response:
            return self._http(
                "POST",
                f"/api/projects/{project_id}/import",
                kind="bulk",
                params={"commit_to_project": "false"},
                files=[(name, (name, data)) for name, data in files],  # distinct field names: all are kept
            )

        response = self._call(f"upload {len(files)} files", post, kind="bulk")
        return [int(i) for i in response.json().get("file_upload_ids", [])]  # in the order sent

    def fetch_file(self, path: str) -> bytes:
        """A file the server serves (e.g. `/data/local-files/?d=...`), with the token.

        `UnreadableFile` when the reference points at another host, or the server answers that it has no
        such file (400, 403, 404, 410): a problem of the task that references it. A server that cannot be
        reached, or keeps answering 5xx, is a `CanvasError` as for any call.
        """
        self.resolve(path)  # checked before any request
        # `kind` twice: `_call` takes one for its messages, `_http` one for the request's timeout.
        response = self._call(
            f"fetch {path}", lambda: self._http("GET", path, kind="bulk", ok=_MISSING), kind="bulk"
        )
        if response.status_code in _MISSING:
            raise UnreadableFile(f"the server answers HTTP {response.status_code} for {path[:200]}")
        return response.content
