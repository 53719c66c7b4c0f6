"""Gold pairs against the real server: Label Studio's own task queue serves them to annotators, their
answers are kept out of the annotations (task meta), and a push that failed midway keeps every answer."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from canvas.core.errors import CanvasError
from canvas.labeling.annotators import add_annotator, project_status
from canvas.labeling.client import LabelStudioClient
from canvas.labeling.pull import pull_preferences
from canvas.labeling.push import push_candidates
from canvas.labeling.schema import choice_result
from canvas.labeling.server import LabelStudioServer

pytestmark = pytest.mark.labelstudio


def _pair_ids(candidates: Path) -> list[str]:
    return [
        r["pair_id"]
        for r in pq.read_table(candidates / "candidates.parquet", columns=["pair_id"]).to_pylist()
    ]


def _label_through_the_queue(url: str, email: str, password: str, project_id: int, choice: str) -> list[str]:
    """Log in as the annotator and label what `GET /api/projects/ID/next` serves until it serves nothing
    (what *Label All Tasks* does in the browser); the pair_ids served, in order."""
    served = []
    with httpx.Client(base_url=url, timeout=30) as browser:
        browser.get("/user/login/").raise_for_status()
        form = {"email": email, "password": password, "csrfmiddlewaretoken": browser.cookies.get("csrftoken")}
        browser.post("/user/login/", data=form, headers={"Referer": f"{url}/user/login/"})
        headers = {"X-CSRFToken": browser.cookies.get("csrftoken", ""), "Referer": url}
        for _ in range(20):
            task = browser.get(f"/api/projects/{project_id}/next", headers=headers)
            if task.status_code == 404:  # nothing left for this annotator
                return served
            task.raise_for_status()
            served.append(task.json()["data"]["pair_id"])
            body = {"result": choice_result(choice), "lead_time": 1.0}
            posted = browser.post(
                f"/api/tasks/{task.json()['id']}/annotations/?project={project_id}",
                json=body,
                headers=headers,
            )
            posted.raise_for_status()
    raise AssertionError(f"the queue kept serving tasks: {served}")


def test_gold_pairs_are_served_by_the_queue_with_overlap_1_and_scored_after_labeling(
    ls_server: LabelStudioServer, ls_client: LabelStudioClient, candidates: Path, tmp_path: Path
) -> None:
    a, b, c, d = _pair_ids(candidates)
    pushed = push_candidates(
        candidates,
        "gold queue",
        url=ls_server.url,
        data_dir=ls_server.data_dir,
        overlap=1,
        gold={a: "left", d: "right"},
    )
    assert (pushed.created, pushed.gold) == (4, 2)
    added = add_annotator(ls_client, "queue1@test.local", tmp_path / "queue1.password")
    password = (tmp_path / "queue1.password").read_text().strip()

    # The answer key is in the task's meta, not an annotation: it does not count toward the overlap.
    served = _label_through_the_queue(ls_server.url, added.email, password, pushed.project_id, "left")
    assert sorted(served) == sorted([a, b, c, d])  # gold pairs included, each once

    result = pull_preferences("gold queue", tmp_path / "out", url=ls_server.url, data_dir=ls_server.data_dir)
    assert (result.annotations, result.kept, result.rejected, result.gold, result.gold_pairs) == (
        4,
        4,
        0,
        0,
        2,
    )
    report = json.loads((tmp_path / "out" / "annotators.json").read_text())
    me = report["annotators"][str(added.user_id)]
    assert (me["count"], me["gold_pairs"], me["gold_accuracy"]) == (4, 2, 0.5)  # left on a (left), d (right)
    status = project_status(ls_client, "gold queue")
    assert (status.complete, status.tasks) == (4, 4)
    (row,) = [r for r in status.annotators if r["id"] == added.user_id]
    assert (row["done"], row["remaining"], row["gold_accuracy"]) == (4, 0, 0.5)


class _ImportFailsOnBatch2(LabelStudioClient):
    """The real client, except that the second task import breaks (as a dropped connection would)."""

    calls = 0

    def import_tasks(self, project_id: int, tasks: list) -> list[int]:
        type(self).calls += 1
        if type(self).calls == 2:
            raise CanvasError("simulated: connection dropped during import of batch 2")
        return super().import_tasks(project_id, tasks)


def _gold_on_server(client: LabelStudioClient, title: str) -> dict[str, str]:
    """pair_id -> the gold answer in its task's meta, as the export (what pull reads) has it."""
    tasks = client.export_tasks(client.find_project(title))
    return {t["data"]["pair_id"]: t["meta"]["canvas_gold"] for t in tasks if "canvas_gold" in t["meta"]}


def test_a_push_rerun_after_a_failure_keeps_every_gold_answer_and_sets_missing_ones(
    ls_server: LabelStudioServer,
    ls_client: LabelStudioClient,
    candidates: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b, c, d = _pair_ids(candidates)
    gold = {a: "left", d: "right"}  # one in the batch that is imported, one in the batch that fails
    where = {"url": ls_server.url, "data_dir": ls_server.data_dir, "overlap": 2, "batch_size": 2}
    flaky = _ImportFailsOnBatch2(ls_server.url, ls_server.token, retries=2, backoff=0.05)
    with pytest.raises(CanvasError, match="batch 2"):
        push_candidates(
            candidates, "gold partial", gold=gold, client=flaky, files_root=ls_server.files_root, **where
        )
    again = push_candidates(candidates, "gold partial", gold=gold, **where)
    assert (again.created, again.existing) == (2, 2)

    # What the user depends on: pull scores the annotators against every gold pair.
    user = ls_client.create_user("partial1@test.local", "partial1")
    for task_id, _ in ls_client.iter_task_data(ls_client.find_project("gold partial")):
        ls_client.create_annotation(task_id, choice_result("left"), completed_by=user)
    pull_preferences("gold partial", tmp_path / "out", url=ls_server.url, data_dir=ls_server.data_dir)
    scored = json.loads((tmp_path / "out" / "annotators.json").read_text())["annotators"][str(user)]
    assert (scored["gold_pairs"], scored["gold_accuracy"]) == (2, 0.5)
    # Each answer travelled with its task's import: the one of the batch that failed came with the re-run.
    assert again.gold == 1 and _gold_on_server(ls_client, "gold partial") == gold

    # Tasks pushed without --gold (or with another answer) get the file's answer, and the log says so.
    push_candidates(candidates, "gold later", **where)
    with caplog.at_level(logging.INFO, logger="canvas.labeling.push"):
        later = push_candidates(candidates, "gold later", gold={b: "tie", c: "right"}, **where)
    assert (later.created, later.gold) == (0, 2)
    assert _gold_on_server(ls_client, "gold later") == {b: "tie", c: "right"}
    assert "set the gold answer of 2 pairs that were already in the project" in caplog.text


def test_old_style_ground_truth_annotations_still_count_as_gold(
    ls_server: LabelStudioServer, ls_client: LabelStudioClient, candidates: Path, tmp_path: Path
) -> None:
    """A project pushed by an older canvas holds its answers as ground-truth annotations by the admin."""
    a, *_ = _pair_ids(candidates)
    pushed = push_candidates(
        candidates, "gold old style", url=ls_server.url, data_dir=ls_server.data_dir, overlap=2
    )
    tasks = {data["pair_id"]: task_id for task_id, data in ls_client.iter_task_data(pushed.project_id)}
    ls_client.create_annotation(tasks[a], choice_result("right"), ground_truth=True)
    user = ls_client.create_user("oldgold@test.local", "oldgold")
    ls_client.create_annotation(tasks[a], choice_result("right"), completed_by=user)
    result = pull_preferences("gold old style", tmp_path, url=ls_server.url, data_dir=ls_server.data_dir)
    assert (result.annotations, result.kept, result.rejected, result.gold, result.gold_pairs) == (
        2,
        1,
        0,
        1,
        1,
    )
    report = json.loads((tmp_path / "annotators.json").read_text())
    assert report["annotators"][str(user)]["gold_accuracy"] == 1.0
