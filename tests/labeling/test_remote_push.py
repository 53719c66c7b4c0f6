"""Push and pull against a server whose data dir (and local-files root) the client is not told about:
the images go through Label Studio's upload API, as they must for a server on another host."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from canvas.cli import main
from canvas.core.errors import CanvasError
from canvas.labeling.client import LabelStudioClient
from canvas.labeling.push import push_candidates
from canvas.labeling.schema import choice_result
from canvas.labeling.server import LabelStudioServer

pytestmark = pytest.mark.labelstudio


@pytest.fixture
def remote_client_env(ls_server: LabelStudioServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client knows only the URL and the token: no record of any server, no data dir."""
    monkeypatch.setenv("CANVAS_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.token)


def _tasks(client: LabelStudioClient, title: str) -> dict[str, dict]:
    project_id = client.find_project(title)
    return {data["pair_id"]: data | {"_id": task_id} for task_id, data in client.iter_task_data(project_id)}


def test_push_uploads_each_image_once_and_pull_reads_them_back(
    ls_server: LabelStudioServer,
    ls_client: LabelStudioClient,
    candidates: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    remote_client_env: None,
) -> None:
    push = [
        "label",
        "push",
        "--candidates",
        str(candidates),
        "--project",
        "remote pairs",
        "--url",
        ls_server.url,
    ]
    assert main(push) == 0
    assert "8 files uploaded" in capsys.readouterr().out
    tasks = _tasks(ls_client, "remote pairs")
    assert len(tasks) == 4
    assert all(t[k].startswith("/data/upload/") for t in tasks.values() for k in ("image_0", "image_1"))
    assert not (ls_server.files_root / "canvas-pairs" / "remote-pairs").exists()  # nothing local
    project_id = ls_client.find_project("remote pairs")
    images = ls_client.find_project(f"canvas images for project {project_id}")
    assert len(ls_client.file_uploads(images)) == 8

    # A re-push uploads nothing and creates nothing.
    assert main(push) == 0
    out = capsys.readouterr().out
    assert "0 tasks created, 4 already there" in out and "0 files uploaded" in out
    images = ls_client.find_project(f"canvas images for project {project_id}")
    assert len(ls_client.file_uploads(images)) == 8 and len(_tasks(ls_client, "remote pairs")) == 4

    # The server serves them (with the token) byte for byte.
    source = {r["pair_id"]: r for r in pq.read_table(candidates / "candidates.parquet").to_pylist()}
    for pair, task in tasks.items():
        assert ls_client.fetch_file(task["image_0"]) == source[pair]["image_0"]

    user = ls_client.create_user("remote1@test.local", "remote1")
    pair, task = next(iter(sorted(tasks.items())))
    ls_client.create_annotation(task["_id"], choice_result("right"), completed_by=user)
    out_dir = tmp_path / "pulled"
    pull = ["label", "pull", "--project", "remote pairs", "--output", str(out_dir), "--url", ls_server.url]
    assert main(pull) == 0
    (row,) = pq.read_table(out_dir / "preferences.parquet").to_pylist()
    assert (row["pair_id"], row["label_1"], row["user_id"]) == (pair, 1.0, user)
    assert row["image_0_url"] == ls_server.url + task["image_0"]
    pulled = Image.open(io.BytesIO(row["jpg_0"]))
    assert pulled.size == Image.open(io.BytesIO(source[pair]["image_0"])).size


def test_a_push_that_fails_midway_continues_without_duplicates(
    ls_server: LabelStudioServer,
    ls_client: LabelStudioClient,
    candidates: Path,
    monkeypatch: pytest.MonkeyPatch,
    remote_client_env: None,
) -> None:
    client = LabelStudioClient(ls_server.url, retries=2, backoff=0.05)
    real_import = client.import_tasks
    calls = []

    def import_then_fail(project_id: int, tasks: list) -> list[int]:
        calls.append(len(tasks))
        if len(calls) == 2:  # the second batch's images are uploaded, then the import breaks
            raise CanvasError("Label Studio at X: import tasks failed (HTTP 503)")
        return real_import(project_id, tasks)

    monkeypatch.setattr(client, "import_tasks", import_then_fail)
    with pytest.raises(CanvasError, match="HTTP 503"):
        push_candidates(candidates, "flaky pairs", client=client, batch_size=2)
    project_id = ls_client.find_project("flaky pairs")
    assert len(_tasks(ls_client, "flaky pairs")) == 2
    images = ls_client.find_project(f"canvas images for project {project_id}")
    assert len(ls_client.file_uploads(images)) == 8

    again = push_candidates(candidates, "flaky pairs", client=LabelStudioClient(ls_server.url), batch_size=2)
    assert (again.created, again.existing, again.uploaded) == (2, 2, 0)
    tasks = _tasks(ls_client, "flaky pairs")
    assert len(tasks) == 4 and len(ls_client.file_uploads(images)) == 8
    for pair, task in tasks.items():
        assert ls_client.fetch_file(task["image_1"])[:8] == b"\x89PNG\r\n\x1a\n", pair


def test_long_pair_ids_upload_once_under_names_the_server_keeps(
    ls_server: LabelStudioServer,
    ls_client: LabelStudioClient,
    candidates: Path,
    tmp_path: Path,
    remote_client_env: None,
) -> None:
    """Label Studio keeps 100 characters of an upload's stored name: pair_ids up to the 128 allowed
    still push, are found again on a re-push (nothing uploaded twice), and are served byte for byte."""
    table = pq.read_table(candidates / "candidates.parquet")
    long_ids = [f"{'x' * 100}-{i:027d}" for i in range(table.num_rows)]  # 128 characters, same first 100
    table = table.set_column(table.column_names.index("pair_id"), "pair_id", pa.array(long_ids))
    (tmp_path / "long").mkdir()
    pq.write_table(table, tmp_path / "long" / "candidates.parquet")

    first = push_candidates(tmp_path / "long", "long pair ids", url=ls_server.url)
    assert (first.created, first.uploaded, first.rejected) == (4, 8, [])
    again = push_candidates(tmp_path / "long", "long pair ids", url=ls_server.url)
    assert (again.created, again.existing, again.uploaded) == (0, 4, 0)
    images = ls_client.find_project(f"canvas images for project {first.project_id}")
    assert len(ls_client.file_uploads(images)) == 8
    source = {r["pair_id"]: r for r in table.to_pylist()}
    tasks = _tasks(ls_client, "long pair ids")
    assert sorted(tasks) == sorted(long_ids)
    for pair, task in tasks.items():
        for i in (0, 1):
            assert ls_client.fetch_file(task[f"image_{i}"]) == source[pair][f"image_{i}"], (pair, i)
