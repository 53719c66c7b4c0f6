"""Every label-studio-sdk call of the project, behind one small client with retries and clear errors.

Connection failures are retried with exponential backoff, then raise one `CanvasError` naming the URL.
A rejected token raises a `CanvasError` that says so (the token itself is masked). Requests that write
(POST) are retried only when the connection was never made, so a retry cannot duplicate a write.

Every request has a connect timeout and a read timeout sized to the call (`Timeouts`): seconds for
small calls, minutes only for the export. A read timeout is not retried (a server that accepted the
request and said nothing is hung; asking again only multiplies the wait), so one call waits at most
its read timeout plus the connection tries; the error says what timed out and after how long.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from canvas.core.errors import CanvasError
from canvas.labeling.config import Kind, Timeouts
from canvas.labeling.server import STATE_FILE, TOKEN_ENV, default_data_dir, mask, read_token

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Errors where the request never reached the server: safe to retry any call.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class LabelStudioClient:
    """A thin wrapper over `label_studio_sdk.LabelStudio`: typed helpers, retries, one error style.

    Args:
        url: server base URL, e.g. `http://127.0.0.1:8080`.
        token: API token; default `$LABEL_STUDIO_API_KEY`, else the one `canvas label server start` stored.
        retries: attempts per call when the server cannot be reached.
        backoff: first wait in seconds; doubled after each failed attempt.
        timeout: one read timeout for every kind of call (tests); default `Timeouts.from_env()`.
        timeouts: the timeouts per kind of call.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        retries: int = 4,
        backoff: float = 0.25,
        timeout: float | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        token = token or read_token()
        if not token:
            raise CanvasError(
                f"no Label Studio API token: set {TOKEN_ENV} or start the server with "
                f"`canvas label server start` (it stores one in {default_data_dir()})"
            )
        self.token = token
        self.retries, self.backoff = max(1, retries), backoff
        timeouts = timeouts or Timeouts.from_env()
        if timeout is not None:
            timeouts = Timeouts(timeout, timeout, timeout, min(timeouts.connect, timeout))
        self.timeouts = timeouts
        # Our own httpx client: its default is the small-call timeout; each call passes its own.
        self.sdk = LabelStudio(
            base_url=self.url,
            api_key=token,
            max_retries=0,
            httpx_client=httpx.Client(timeout=self._timeout("small"), follow_redirects=True),
        )

    def __repr__(self) -> str:
        return f"LabelStudioClient(url={self.url!r}, token={mask(self.token)!r})"

    # -- the one place that talks to the server --------------------------------------------------
    def _timeout(self, kind: Kind) -> httpx.Timeout:
        read = self.timeouts.read(kind)
        return httpx.Timeout(read, connect=min(self.timeouts.connect, read))

    def _opts(self, kind: Kind = "small") -> dict[str, Any]:
        """The SDK's per-request options: this kind of call's timeouts."""
        return {"timeout": self._timeout(kind)}

    def _call(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        idempotent: bool = True,
        kind: Kind = "small",
        **kwargs: Any,
    ) -> T:
        from label_studio_sdk.core.api_error import ApiError

        started, delay = time.monotonic(), self.backoff
        for attempt in range(1, self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except _NOT_SENT as exc:
                if attempt == self.retries:
                    raise CanvasError(
                        f"Label Studio at {self.url} is not reachable ({what}: {type(exc).__name__} after "
                        f"{self.retries} tries, {time.monotonic() - started:.1f} s); start it with "
                        "`canvas label server start` or check --url"
                    ) from exc
                logger.warning("%s: %s, retrying in %.2f s", what, type(exc).__name__, delay)
            except httpx.TimeoutException as exc:  # connected, then no answer: hung, not retried
                applied = "" if idempotent else "; it may have been applied: re-running push is safe"
                raise CanvasError(
                    f"Label Studio at {self.url} did not answer {what} within {self.timeouts.read(kind):g} s "
                    f"({type(exc).__name__}, {time.monotonic() - started:.1f} s in all){applied}; is it hung? "
                    f"Restart it, or raise {Timeouts.ENV[kind]}"
                ) from exc
            except httpx.TransportError as exc:
                if not idempotent:  # a write that may have reached the server: not repeated
                    raise CanvasError(
                        f"Label Studio at {self.url} did not complete {what} ({type(exc).__name__}); it may "
                        "have been applied: re-running push is safe (it skips pairs already there)"
                    ) from exc
                if attempt == self.retries:
                    raise CanvasError(
                        f"Label Studio at {self.url} failed {what} ({type(exc).__name__} after "
                        f"{self.retries} tries); check the server's log"
                    ) from exc
                logger.warning("%s: %s, retrying in %.2f s", what, type(exc).__name__, delay)
            except httpx.HTTPStatusError as exc:
                raise CanvasError(
                    f"Label Studio at {self.url}: {what} failed (HTTP {exc.response.status_code})"
                ) from exc
            except ApiError as exc:
                if exc.status_code == 401:
                    raise CanvasError(
                        f"Label Studio at {self.url} rejected the API token {mask(self.token)} (401 "
                        f"Unauthorized): set {TOKEN_ENV} to this server's token"
                    ) from exc
                if exc.status_code in (502, 503, 504) and idempotent and attempt < self.retries:
                    logger.warning("%s: HTTP %s, retrying in %.2f s", what, exc.status_code, delay)
                else:
                    body = json.dumps(exc.body)[:300] if exc.body is not None else ""
                    raise CanvasError(
                        f"Label Studio at {self.url}: {what} failed (HTTP {exc.status_code}) {body}"
                    ) from exc
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    # -- users -----------------------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        user = self._call("whoami", self.sdk.users.whoami, request_options=self._opts())
        return {"id": user.id, "email": user.email}

    def user_ids_by_email(self) -> dict[str, int]:
        users = self._call("list users", self.sdk.users.list, request_options=self._opts())
        return {u.email: u.id for u in users}

    def create_user(self, email: str, username: str) -> int:
        user = self._call(
            "create user",
            self.sdk.users.create,
            email=email,
            username=username,
            idempotent=False,
            request_options=self._opts(),
        )
        return int(user.id)

    def users(self) -> list[dict[str, Any]]:
        """Every user of the organization: id, email, date joined, last activity (ISO strings)."""
        users = self._call("list users", self.sdk.users.list, request_options=self._opts())
        return [
            {
                "id": int(u.id),
                "email": u.email,
                "date_joined": str(u.date_joined or ""),
                "last_activity": str(u.last_activity or ""),
            }
            for u in users
        ]

    def sign_up(self, email: str, password: str) -> None:
        """Make a user who can log in: sign up through the organization's invite link.

        Label Studio's users API makes users without a password (and has no call to set one), so this
        does what an invited annotator does in a browser: it reads the invite token with our API token,
        then posts the sign-up form (with its CSRF cookie) to `/user/signup/?token=...`.
        """
        invite = self._call(
            "read the invite link",
            self.sdk.organizations.invites.get_invite_link,
            request_options=self._opts(),
        )

        def post() -> httpx.Response:
            with httpx.Client(base_url=self.url, timeout=self._timeout("small")) as browser:
                page = browser.get("/user/signup/", params={"token": invite.token})
                page.raise_for_status()
                csrf = browser.cookies.get("csrftoken", "")
                return browser.post(
                    "/user/signup/",
                    params={"token": invite.token},
                    data={"email": email, "password": password, "csrfmiddlewaretoken": csrf},
                    headers={"Referer": f"{self.url}/user/signup/", "X-CSRFToken": csrf},
                )

        response = self._call("sign up", post, idempotent=False)
        if response.status_code != 302:  # a success redirects; a form shown again lists the reason
            reasons = re.findall(
                r'class="[^"]*(?:error|field_errors)[^"]*"[^>]*>\s*([^<]{3,200})', response.text
            )
            reason = "; ".join(dict.fromkeys(r.strip() for r in reasons)) or f"HTTP {response.status_code}"
            raise CanvasError(f"Label Studio at {self.url} refused to sign up {email}: {reason}")

    # -- projects --------------------------------------------------------------------------------
    def find_project(self, title: str) -> int | None:
        """Id of the project with this exact title; an error when several share it."""

        def matches() -> list[int]:
            return [
                p.id
                for p in self.sdk.projects.list(title=title, page_size=1000, request_options=self._opts())
                if p.title == title
            ]

        found = self._call("list projects", matches)
        if len(found) > 1:
            raise CanvasError(f"{len(found)} projects on {self.url} are titled {title!r}: rename all but one")
        return found[0] if found else None

    def create_project(self, title: str, label_config: str, overlap: int, description: str = "") -> int:
        project = self._call(
            "create project",
            self.sdk.projects.create,
            title=title,
            description=description,
            label_config=label_config,
            maximum_annotations=overlap,
            overlap_cohort_percentage=100,
            show_ground_truth_first=True,
            show_skip_button=True,
            idempotent=False,
            request_options=self._opts(),
        )
        return int(project.id)

    def update_project(self, project_id: int, **fields: Any) -> None:
        self._call(
            "update project", self.sdk.projects.update, id=project_id, request_options=self._opts(), **fields
        )

    def get_project(self, project_id: int) -> dict[str, Any]:
        project = self._call(
            "get project", self.sdk.projects.get, id=project_id, request_options=self._opts()
        )
        return {
            "id": project.id,
            "title": project.title,
            "label_config": project.label_config,
            "maximum_annotations": project.maximum_annotations,
        }

    def delete_project(self, project_id: int) -> None:
        self._call("delete project", self.sdk.projects.delete, id=project_id, request_options=self._opts())

    # -- storage, tasks --------------------------------------------------------------------------
    def local_storage_paths(self, project_id: int) -> list[str]:
        storages = self._call(
            "list local storages",
            self.sdk.import_storage.local.list,
            project=project_id,
            request_options=self._opts(),
        )
        return [s.path for s in storages]

    def create_local_storage(self, project_id: int, path: str, title: str) -> None:
        # Not synced on purpose: a sync would create one task per file; our tasks reference the files.
        self._call(
            "create local-files storage",
            self.sdk.import_storage.local.create,
            project=project_id,
            path=path,
            title=title,
            use_blob_urls=True,
            idempotent=False,
            request_options=self._opts(),
        )

    def import_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> list[int]:
        response = self._call(
            "import tasks",
            self.sdk.projects.import_tasks,
            id=project_id,
            request=list(tasks),
            return_task_ids=True,
            idempotent=False,
            kind="bulk",
            request_options=self._opts("bulk"),
        )
        return list(response.task_ids or [])

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

        def post() -> httpx.Response:
            response = httpx.post(
                f"{self.url}/api/projects/{project_id}/import",
                params={"commit_to_project": "false"},
                files=[(name, (name, data)) for name, data in files],  # distinct field names: all are kept
                headers={"Authorization": f"Token {self.token}"},
                timeout=self._timeout("bulk"),
            )
            if response.status_code >= 400:
                from label_studio_sdk.core.api_error import ApiError

                raise ApiError(status_code=response.status_code, body=response.text[:300])
            return response

        response = self._call(f"upload {len(files)} files", post, idempotent=False, kind="bulk")
        return [int(i) for i in response.json().get("file_upload_ids", [])]  # in the order sent

    def iter_task_data(self, project_id: int, page_size: int = 5000) -> Iterator[tuple[int, dict[str, Any]]]:
        """(task id, task data) for every task of a project."""

        def page(number: int) -> httpx.Response:
            # `fields=task_only&include=id,data`: 10k tasks in ~3 s; the SDK's `fields=all` takes ~14 s.
            response = httpx.get(
                f"{self.url}/api/tasks",
                params={
                    "project": project_id,
                    "page": number,
                    "page_size": page_size,
                    "fields": "task_only",
                    "include": "id,data",
                },
                headers={"Authorization": f"Token {self.token}"},
                timeout=self._timeout("bulk"),
            )
            if response.status_code == 404:  # past the last page
                return response
            if response.status_code == 401:
                from label_studio_sdk.core.api_error import ApiError

                raise ApiError(status_code=401, body=None)
            response.raise_for_status()
            return response

        number = 1
        while True:
            response = self._call("list tasks", page, number, kind="bulk")
            if response.status_code == 404:
                return
            tasks = response.json().get("tasks", [])
            for task in tasks:
                yield int(task["id"]), task.get("data", {})
            if len(tasks) < page_size:
                return
            number += 1

    # -- annotations, predictions ----------------------------------------------------------------
    def create_annotation(
        self,
        task_id: int,
        result: list[dict[str, Any]],
        completed_by: int | None = None,
        lead_time: float | None = None,
        ground_truth: bool = False,
        was_cancelled: bool = False,
    ) -> int:
        fields: dict[str, Any] = {
            "result": result,
            "ground_truth": ground_truth,
            "was_cancelled": was_cancelled,
        }
        if completed_by is not None:
            fields["completed_by"] = completed_by
        if lead_time is not None:
            fields["lead_time"] = lead_time
        annotation = self._call(
            "create annotation",
            self.sdk.annotations.create,
            id=task_id,
            idempotent=False,
            request_options=self._opts(),
            **fields,
        )
        if ground_truth:
            # The create call ignores the flag; an update sets it.
            self._call(
                "mark ground truth",
                self.sdk.annotations.update,
                id=annotation.id,
                ground_truth=True,
                request_options=self._opts(),
            )
        return int(annotation.id)

    def predictions(self, project_id: int) -> dict[int, list[dict[str, Any]]]:
        """Pre-labels per task id: result, score, model_version."""
        found = self._call(
            "list predictions",
            self.sdk.predictions.list,
            project=project_id,
            kind="bulk",
            request_options=self._opts("bulk"),
        )
        out: dict[int, list[dict[str, Any]]] = {}
        for p in found:
            out.setdefault(int(p.task), []).append(
                {"result": p.result, "score": p.score, "model_version": p.model_version}
            )
        return out

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task with its annotations (Label Studio's JSON export)."""

        def download() -> bytes:
            chunks = self.sdk.projects.exports.download_sync(
                id=project_id,
                export_type="JSON",
                download_all_tasks=True,
                request_options=self._opts("export"),
            )
            return b"".join(chunks)

        return json.loads(self._call("export tasks", download, kind="export"))

    def fetch_file(self, path: str) -> bytes:
        """A file the server serves (e.g. `/data/local-files/?d=...`), with the token."""

        def get() -> bytes:
            response = httpx.get(
                f"{self.url}{path}",
                headers={"Authorization": f"Token {self.token}"},
                timeout=self._timeout("bulk"),
            )
            if response.status_code == 401:
                from label_studio_sdk.core.api_error import ApiError

                raise ApiError(status_code=401, body=None)
            response.raise_for_status()
            return response.content

        return self._call(f"fetch {path}", get, kind="bulk")


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
    return LabelStudioClient(url, token or read_token(data_dir), **client_kwargs), files_root
