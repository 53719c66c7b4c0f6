"""Projects kept apart, and pulls that go on past one bad task, against the real server: titles that make
the same folder name, titles with spaces at the ends, a deleted annotator, an image that cannot be read,
an image reference that points at another host."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyarrow.parquet as pq
import pytest

from canvas.cli import main
from canvas.core.errors import CanvasError
from canvas.labeling.annotators import project_status
from canvas.labeling.client import LabelStudioClient
from canvas.labeling.pull import pull_preferences
from canvas.labeling.push import push_candidates
from canvas.labeling.schema import choice_result
from canvas.labeling.server import LabelStudioServer

pytestmark = pytest.mark.labelstudio


def _rows(candidates: Path) -> dict[str, dict]:
    return {r["pair_id"]: r for r in pq.read_table(candidates / "candidates.parquet").to_pylist()}


def _tasks(client: LabelStudioClient, project_id: int) -> dict[str, tuple[int, dict]]:
    return {data["pair_id"]: (task_id, data) for task_id, data in client.iter_task_data(project_id)}


def _uid(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def test_two_titles_with_the_same_slug_keep_their_own_images(
    ls_server: LabelStudioServer, ls_client: LabelStudioClient, candidates: Path, tmp_path: Path
) -> None:
    # The same pair_ids with the images the other way round: same file names, different pictures.
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    table = pq.read_table(candidates / "candidates.parquet")
    names = {"image_0": "image_1", "image_1": "image_0"}
    pq.write_table(
        table.rename_columns([names.get(n, n) for n in table.column_names]), swapped / "candidates.parquet"
    )
    where = {"url": ls_server.url, "data_dir": ls_server.data_dir}
    user = ls_client.create_user("slug1@test.local", "slug1")
    for title, source in (("coll one", candidates), ("coll-one", swapped)):
        pushed = push_candidates(source, title, **where)
        for task_id, _ in _tasks(ls_client, pushed.project_id).values():
            ls_client.create_annotation(task_id, choice_result("left"), completed_by=user)

    for title, source in (("coll one", candidates), ("coll-one", swapped)):
        pull_preferences(title, tmp_path / title, **where)
        expected = _rows(source)
        got = pq.read_table(tmp_path / title / "preferences.parquet").to_pylist()
        assert len(got) == 4
        for row in got:
            assert row["image_0_uid"] == _uid(expected[row["pair_id"]]["image_0"]), title
            assert row["image_1_uid"] == _uid(expected[row["pair_id"]]["image_1"]), title


def test_a_title_with_spaces_at_the_ends_is_one_project_that_pull_and_status_find(
    ls_server: LabelStudioServer,
    ls_client: LabelStudioClient,
    candidates: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    where = {"url": ls_server.url, "data_dir": ls_server.data_dir}
    first = push_candidates(candidates, "  padded pairs ", **where)
    again = push_candidates(candidates, " padded pairs", **where)
    assert (again.project_id, again.created, again.existing) == (first.project_id, 0, 4)
    assert (
        ls_client.find_project("padded pairs") == first.project_id
    )  # one project, as Label Studio titles it
    assert pull_preferences(" padded pairs  ", tmp_path, **where).rows == 0
    assert project_status(ls_client, "padded pairs  ").project_id == first.project_id

    server = ["--url", ls_server.url, "--data-dir", str(ls_server.data_dir)]
    assert main(["label", "pull", "--project", "   ", "--output", str(tmp_path / "x"), *server]) == 2
    assert main(["label", "status", "--project", " ", *server]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and err.count("the title is empty") == 2, err
    with pytest.raises(CanvasError, match="the title is empty"):
        push_candidates(candidates, "  ", **where)


def test_annotations_of_a_deleted_annotator_are_rejected_and_the_counts_add_up(
    ls_server: LabelStudioServer, ls_client: LabelStudioClient, candidates: Path, tmp_path: Path
) -> None:
    pushed = push_candidates(
        candidates, "deleted annotator", url=ls_server.url, data_dir=ls_server.data_dir, overlap=2
    )
    (a, (ta, _)), (b, (tb, _)), (c, (tc, _)), _ = sorted(_tasks(ls_client, pushed.project_id).items())
    stays = ls_client.create_user("stays@test.local", "stays")
    leaves = ls_client.create_user("leaves@test.local", "leaves")
    for task_id, user in ((ta, stays), (tb, stays), (ta, leaves), (tc, leaves)):
        ls_client.create_annotation(task_id, choice_result("left"), completed_by=user)
    ls_client._http("DELETE", f"/api/users/{leaves}", ok=(204,))

    result = pull_preferences("deleted annotator", tmp_path, url=ls_server.url, data_dir=ls_server.data_dir)
    assert (result.annotations, result.kept, result.rejected, result.gold) == (4, 2, 2, 0)
    rejected = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert sorted((r["pair_id"], r["reason"]) for r in rejected) == [
        (a, "annotator deleted"),
        (c, "annotator deleted"),
    ]
    assert {
        r["pair_id"]: r["annotator_ids"] for r in pq.read_table(tmp_path / "preferences.parquet").to_pylist()
    } == {
        a: [stays],
        b: [stays],
    }
    status = project_status(ls_client, "deleted annotator")
    (row,) = [r for r in status.annotators if r["id"] == stays]
    assert (row["done"], row["remaining"], status.complete) == (2, 2, 0)


@pytest.fixture
def other_host() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.2 (another address than the Label Studio server's): its base URL and the
    paths of the requests it got, with any Authorization header it was sent."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(f"{self.path} auth={self.headers.get('Authorization')}")
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.2:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_pair_whose_image_cannot_be_read_is_rejected_and_the_pull_goes_on(
    ls_server: LabelStudioServer,
    ls_client: LabelStudioClient,
    candidates: Path,
    tmp_path: Path,
    other_host: tuple[str, list[str]],
) -> None:
    pushed = push_candidates(candidates, "unreadable pairs", url=ls_server.url, data_dir=ls_server.data_dir)
    tasks = _tasks(ls_client, pushed.project_id)
    user = ls_client.create_user("unreadable@test.local", "unreadable")
    for task_id, _ in tasks.values():
        ls_client.create_annotation(task_id, choice_result("left"), completed_by=user)
    (gone, (_, gone_data)), (garbled, (_, garbled_data)), (foreign, (foreign_id, foreign_data)), (good, _) = (
        sorted(tasks.items())
    )

    def local(reference: str) -> Path:
        return ls_server.files_root / parse_qs(urlparse(reference).query)["d"][0]

    local(gone_data["image_0"]).unlink()  # deleted from the server's disk
    local(garbled_data["image_1"]).write_bytes(b"not an image at all")
    address, seen = other_host
    glued = f"@{address}/steal"  # glued onto the server URL, this names another host
    ls_client._http("PATCH", f"/api/tasks/{foreign_id}", json={"data": foreign_data | {"image_0": glued}})

    result = pull_preferences("unreadable pairs", tmp_path, url=ls_server.url, data_dir=ls_server.data_dir)
    assert seen == []  # no request (and no token) went to the other host
    assert (result.rows, result.annotations, result.kept, result.rejected) == (1, 4, 1, 3)
    (row,) = pq.read_table(tmp_path / "preferences.parquet").to_pylist()
    assert row["pair_id"] == good
    reasons = {
        r["pair_id"]: r["reason"]
        for r in map(json.loads, (tmp_path / "rejected.jsonl").read_text().splitlines())
    }
    assert reasons[gone].startswith("image_0 cannot be read: the server answers HTTP 404")
    assert reasons[garbled] == "an image of the pair cannot be decoded (UnidentifiedImageError)"
    assert reasons[foreign].startswith("image_0 cannot be read: the server answers HTTP 404")

    # A full URL to another host is refused before any request.
    ls_client._http(
        "PATCH", f"/api/tasks/{foreign_id}", json={"data": foreign_data | {"image_0": f"http://{address}/x"}}
    )
    pull_preferences("unreadable pairs", tmp_path, url=ls_server.url, data_dir=ls_server.data_dir)
    assert seen == []
    reasons = {
        r["pair_id"]: r["reason"]
        for r in map(json.loads, (tmp_path / "rejected.jsonl").read_text().splitlines())
    }
    assert reasons[foreign] == (
        f"image_0 cannot be read: 'http://{address}/x' points at http://{address}, not at the server "
        f"{ls_server.url}: not fetched"
    )
