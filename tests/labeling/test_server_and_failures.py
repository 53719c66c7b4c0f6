"""Server lifecycle, secrets, and failures against the real server: down, wrong port, wrong token."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from canvas.cli import main
from canvas.core.errors import CanvasError
from canvas.labeling.client import LabelStudioClient
from canvas.labeling.pull import pull_preferences
from canvas.labeling.push import push_candidates
from canvas.labeling.server import TOKEN_ENV, LabelStudioServer, free_port

pytestmark = pytest.mark.labelstudio


def test_server_start_status_stop_and_a_stopped_server_gives_a_clear_error(
    ls_server: LabelStudioServer,
    candidates: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    data_dir = tmp_path / "ls"
    taken = ls_server.url.rsplit(":", 1)[1]
    # Label Studio would silently move to another port; we refuse a taken one.
    assert main(["label", "server", "start", "--data-dir", str(data_dir), "--port", taken]) == 2
    assert "in use" in capsys.readouterr().err

    started = time.monotonic()
    assert main(["label", "server", "start", "--data-dir", str(data_dir)]) == 0
    assert time.monotonic() - started < 60  # from the pre-migrated template, not ~30 s of migrations
    server = LabelStudioServer(data_dir)
    try:
        assert server.status().running and server.url.startswith("http://127.0.0.1:")
        token = (data_dir / "api-token").read_text()
        for secret in ("api-token", "admin-password"):
            assert stat.S_IMODE(os.stat(data_dir / secret).st_mode) == 0o600
        assert main(["label", "server", "status", "--data-dir", str(data_dir)]) == 0
        out = capsys.readouterr().out
        assert "running at http://127.0.0.1:" in out and token[:4] in out and token not in out
        assert token not in (data_dir / "label-studio.log").read_text()

        pushed = push_candidates(
            candidates, "down pairs", data_dir=data_dir
        )  # URL and token from the data dir
        assert pushed.created == 4
    finally:
        assert main(["label", "server", "stop", "--data-dir", str(data_dir)]) == 0
    assert not server.status().running
    assert main(["label", "server", "status", "--data-dir", str(data_dir)]) == 3

    started = time.monotonic()
    with pytest.raises(CanvasError) as exc:
        pull_preferences("down pairs", tmp_path / "out", data_dir=data_dir)
    message = str(exc.value)
    assert server.url in message and "not reachable" in message and "4 tries" in message
    assert time.monotonic() - started < 15  # bounded: 0.25 + 0.5 + 1 s of backoff


def test_wrong_port_retries_a_bounded_number_of_times_then_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = LabelStudioClient(url, token="some-token-123456", retries=3, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(CanvasError, match="not reachable") as exc:
        client.find_project("anything")
    assert url in str(exc.value) and "3 tries" in str(exc.value)
    assert time.monotonic() - started < 5


def test_wrong_token_gives_a_clear_401_message(ls_server: LabelStudioServer, candidates: Path) -> None:
    wrong = "wrong-token-0123456789"
    client = LabelStudioClient(ls_server.url, token=wrong)
    with pytest.raises(CanvasError) as exc:
        client.whoami()
    message = str(exc.value)
    assert "401" in message and "rejected the API token" in message and ls_server.url in message
    assert wrong not in message  # masked
    with pytest.raises(CanvasError, match="401"):
        push_candidates(
            candidates, "never pushed", url=ls_server.url, token=wrong, files_root=ls_server.files_root
        )


def test_cli_mistakes_are_one_line_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["label", "push", "--candidates", str(tmp_path), "--project", "x"]) == 2
    assert "at least 3 characters" in capsys.readouterr().err
    assert (
        main(["label", "pull", "--project", "abc", "--output", str(tmp_path), "--data-dir", str(tmp_path)])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("canvas: error: no --url given") and err.count("\n") == 1


def test_a_slow_server_is_retried_with_backoff_then_named(ls_server: LabelStudioServer) -> None:
    import signal

    # The real server, paused: the kernel accepts connections but nothing answers (a hung server).
    client = LabelStudioClient(ls_server.url, ls_server.token, retries=2, backoff=0.05, timeout=0.5)
    os.kill(ls_server.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(CanvasError) as exc:
            client.find_project("anything")
        elapsed = time.monotonic() - started
    finally:
        os.kill(ls_server.pid, signal.SIGCONT)
    assert ls_server.url in str(exc.value) and "ReadTimeout after 2 tries" in str(exc.value)
    assert 1.0 <= elapsed < 5  # two 0.5 s timeouts and one backoff, no more
    assert client.find_project("anything") is None  # answers again once resumed
