"""`canvas label annotators add/list` and `canvas label status` against the real server."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import httpx
import pytest

from canvas.cli import main
from canvas.labeling.client import LabelStudioClient
from canvas.labeling.push import push_candidates
from canvas.labeling.schema import choice_result
from canvas.labeling.server import LabelStudioServer

pytestmark = pytest.mark.labelstudio


def _logs_in(url: str, email: str, password: str) -> bool:
    """Log in through the login form as a browser would; True if the session then is that user."""
    with httpx.Client(base_url=url, timeout=20) as browser:
        browser.get("/user/login/").raise_for_status()
        csrf = browser.cookies.get("csrftoken", "")
        form = {"email": email, "password": password, "csrfmiddlewaretoken": csrf}
        browser.post("/user/login/", data=form, headers={"Referer": f"{url}/user/login/"})
        me = browser.get("/api/current-user/whoami")
        return me.status_code == 200 and me.json().get("email") == email


def _server_args(server: LabelStudioServer) -> list[str]:
    return ["--url", server.url, "--data-dir", str(server.data_dir)]


def test_added_annotators_can_log_in_and_are_listed(
    ls_server: LabelStudioServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["label", "annotators", "add", "--email", "ann-a@test.local", *_server_args(ls_server)]) == 0
    out = capsys.readouterr().out
    password = re.search(r"password \(shown once, not stored\): (\S+)", out).group(1)
    assert _logs_in(ls_server.url, "ann-a@test.local", password)
    assert not _logs_in(ls_server.url, "ann-a@test.local", password + "x")

    secret = tmp_path / "ann-b.password"
    args = ["label", "annotators", "add", "--email", "ann-b@test.local", "--password-file", str(secret)]
    assert main([*args, *_server_args(ls_server)]) == 0
    out = capsys.readouterr().out
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    password_b = secret.read_text().strip()
    assert password_b and password_b not in out and str(secret) in out
    assert _logs_in(ls_server.url, "ann-b@test.local", password_b)

    # The same email again: one line, exit 2, and the existing file is never overwritten.
    assert main([*args, *_server_args(ls_server)]) == 2
    assert "already a user" in capsys.readouterr().err
    assert secret.read_text().strip() == password_b

    assert main(["label", "annotators", "list", *_server_args(ls_server)]) == 0
    listed = capsys.readouterr().out
    assert "ann-a@test.local" in listed and "ann-b@test.local" in listed


def test_status_shows_progress_and_agreement_per_annotator(
    ls_server: LabelStudioServer,
    ls_client: LabelStudioClient,
    candidates: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pushed = push_candidates(
        candidates, "status pairs", url=ls_server.url, data_dir=ls_server.data_dir, overlap=2
    )
    tasks = sorted(t for t, _ in ls_client.iter_task_data(pushed.project_id))
    s1 = ls_client.create_user("stat1@test.local", "stat1")
    s2 = ls_client.create_user("stat2@test.local", "stat2")
    for task, user, choice in [
        (tasks[0], s1, "left"),
        (tasks[0], s2, "left"),  # agree
        (tasks[1], s1, "left"),
        (tasks[1], s2, "right"),  # disagree: a tie, neither agrees with it
        (tasks[2], s1, "tie"),  # only s1 so far
    ]:
        ls_client.create_annotation(task, choice_result(choice), completed_by=user)
    # s2 skips tasks[3]: Label Studio never serves it to s2 again, so it is not left for s2.
    ls_client.create_annotation(tasks[3], [], completed_by=s2, was_cancelled=True)

    assert main(["label", "status", "--project", "status pairs", *_server_args(ls_server)]) == 0
    out = capsys.readouterr().out
    assert "4 tasks, overlap 2; 2 complete, 2 need more votes" in out
    rows = {
        m[1]: m[2:] for m in re.findall(r"^\s*(\d+)\s+(\S+@\S+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)$", out, re.M)
    }
    # done, remaining (tasks with < 2 annotators not yet done or skipped by them), agreement, gold accuracy
    assert rows["stat1@test.local"] == ("3", "1", "50%", "-")
    assert rows["stat2@test.local"] == ("2", "1", "50%", "-")
    assert main(["label", "status", "--project", "no such pairs", *_server_args(ls_server)]) == 2
