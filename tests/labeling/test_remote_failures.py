"""A bad network on the upload path (a server on another host): the real server behind a proxy that answers
chosen requests itself (5xx, 401), answers late, or goes away mid-push. Each gives bounded retries or one
line naming what failed, and a re-run continues where the push stopped, with no duplicate task or file."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from canvas.core.errors import CanvasError
from canvas.labeling.client import LabelStudioClient
from canvas.labeling.config import Timeouts
from canvas.labeling.pull import pull_preferences
from canvas.labeling.push import push_candidates
from canvas.labeling.schema import choice_result
from canvas.labeling.server import LabelStudioServer

pytestmark = pytest.mark.labelstudio

UPLOAD = "commit_to_project=false"  # the upload request's query (tasks are imported without it)


@dataclass
class Fault:
    """Requests whose method and path contain these: the first `skip` pass, then `times` are hit."""

    method: str
    path_has: str
    action: str  # "status" (answer `status`, not forwarded), "late" (forward, answer after `delay`), "vanish"
    status: int = 503
    delay: float = 0.0
    skip: int = 0
    times: int = 1_000_000
    seen: int = 0
    hit: int = 0


class FaultyProxy:
    """A reverse proxy on 127.0.0.1 in front of `target` that applies the faults it is given."""

    def __init__(self, target: str) -> None:
        self.target, self.faults = target, []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._match(self.command, self.path)
                if fault is not None and fault.action == "status":
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", "12")
                    self.end_headers()
                    self.wfile.write(b"proxy fault\n")
                    return
                if fault is not None and fault.action == "vanish":  # the server is gone from now on
                    proxy.server.socket.close()
                    self.close_connection = True
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                answer = httpx.request(
                    self.command, proxy.target + self.path, headers=headers, content=body, timeout=120
                )
                if fault is not None and fault.action == "late":
                    time.sleep(fault.delay)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _match(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if method == fault.method and fault.path_has in path:
                    fault.seen += 1
                    if fault.seen > fault.skip and fault.hit < fault.times:
                        fault.hit += 1
                        return fault
        return None


@pytest.fixture
def proxy(ls_server: LabelStudioServer) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(ls_server.url)
    yield proxy
    proxy.server.shutdown()
    proxy.server.server_close()


def _through(proxy: FaultyProxy, token: str, **kwargs: object) -> LabelStudioClient:
    return LabelStudioClient(proxy.url, token, retries=3, backoff=0.05, **kwargs)


def _state(client: LabelStudioClient, title: str) -> tuple[list[str], int]:
    """The project's pair_ids (one per task, duplicates kept) and how many files its images project holds."""
    project_id = client.find_project(title)
    pairs = sorted(str(data["pair_id"]) for _, data in client.iter_task_data(project_id))
    images = client.find_project(f"canvas images for project {project_id}")
    return pairs, len(client.file_uploads(images))


def test_a_5xx_on_an_upload_is_retried_and_the_push_completes(
    ls_server: LabelStudioServer, ls_client: LabelStudioClient, proxy: FaultyProxy, candidates: Path
) -> None:
    proxy.faults.append(Fault("POST", UPLOAD, "status", status=503, skip=1, times=2))
    result = push_candidates(
        candidates, "upload 503 once", client=_through(proxy, ls_server.token), batch_size=2
    )
    assert proxy.faults[0].hit == 2  # the second upload request failed twice, then went through
    assert (result.created, result.uploaded) == (4, 8)
    pairs, files = _state(ls_client, "upload 503 once")
    assert len(pairs) == len(set(pairs)) == 4 and files == 8


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            Fault("POST", UPLOAD, "status", status=503, skip=1),
            "upload 4 files failed (HTTP 503 after 3 tries)",
        ),
        (Fault("POST", UPLOAD, "status", status=401, skip=1), "rejected the API token"),
        (Fault("POST", UPLOAD, "late", delay=8.0, skip=1), "did not answer upload 4 files within 3 s"),
        (
            Fault("POST", UPLOAD, "vanish", skip=1),
            "is not reachable (upload 4 files: ConnectError after 3 tries",
        ),
    ],
    ids=["5xx", "401", "timeout", "unreachable"],
)
def test_a_failure_mid_upload_names_it_in_one_line_and_a_rerun_continues_without_duplicates(
    ls_server: LabelStudioServer,
    ls_client: LabelStudioClient,
    proxy: FaultyProxy,
    candidates: Path,
    fault: Fault,
    message: str,
) -> None:
    title = f"upload fails {fault.action} {fault.status}"
    proxy.faults.append(fault)
    client = _through(proxy, ls_server.token, timeouts=Timeouts(small=20, bulk=3))
    started = time.monotonic()
    with pytest.raises(CanvasError) as failed:
        push_candidates(candidates, title, client=client, batch_size=2)
    text = str(failed.value)
    assert message in text and proxy.url in text and "\n" not in text, text
    assert time.monotonic() - started < 30  # bounded: a few short retries or one read timeout
    pairs, _ = _state(ls_client, title)
    assert len(pairs) == 2  # the first batch went in; the second's upload failed before its import

    again = push_candidates(candidates, title, client=LabelStudioClient(ls_server.url, ls_server.token))
    assert (again.created, again.existing) == (2, 2)
    pairs, files = _state(ls_client, title)
    assert len(pairs) == len(set(pairs)) == 4
    # A late answer was stored by the server: the re-run finds those files and does not send them again.
    assert again.uploaded == (0 if fault.action == "late" else 4) and files == 8


def _annotated(
    ls_server: LabelStudioServer, ls_client: LabelStudioClient, candidates: Path, title: str
) -> None:
    """A project pushed through the upload API, each of its 4 pairs voted once."""
    pushed = push_candidates(candidates, title, client=LabelStudioClient(ls_server.url, ls_server.token))
    user = ls_client.create_user(f"{title.replace(' ', '-')}@test.local", title.replace(" ", "-"))
    for task_id, _ in ls_client.iter_task_data(pushed.project_id):
        ls_client.create_annotation(task_id, choice_result("left"), completed_by=user)


def test_a_5xx_on_an_image_fetch_during_pull_is_retried(
    ls_server: LabelStudioServer,
    ls_client: LabelStudioClient,
    proxy: FaultyProxy,
    candidates: Path,
    tmp_path: Path,
) -> None:
    _annotated(ls_server, ls_client, candidates, "pull 502 once")
    proxy.faults.append(Fault("GET", "/data/upload/", "status", status=502, times=1))
    pulled = pull_preferences("pull 502 once", tmp_path / "out", client=_through(proxy, ls_server.token))
    assert proxy.faults[0].hit == 1 and pulled.rows == 4 and pulled.kept == 4


def test_an_image_fetch_that_keeps_failing_names_the_file_in_one_line(
    ls_server: LabelStudioServer,
    ls_client: LabelStudioClient,
    proxy: FaultyProxy,
    candidates: Path,
    tmp_path: Path,
) -> None:
    _annotated(ls_server, ls_client, candidates, "pull 503 always")
    proxy.faults.append(Fault("GET", "/data/upload/", "status", status=503))
    with pytest.raises(CanvasError) as failed:
        pull_preferences("pull 503 always", tmp_path / "out", client=_through(proxy, ls_server.token))
    text = str(failed.value)
    assert "fetch /data/upload/" in text and "HTTP 503 after 3 tries" in text and "\n" not in text, text
    assert not (tmp_path / "out" / "preferences.parquet").exists()
