"""Server lifecycle, secrets, and failures against the real server: down, wrong port, wrong token."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from canvas.cli import main
from canvas.core.errors import CanvasError
from canvas.labeling.client import LabelStudioClient
from canvas.labeling.config import Timeouts
from canvas.labeling.processes import data_dir_processes
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


def test_a_paused_server_is_named_after_one_read_timeout_not_retried(ls_server: LabelStudioServer) -> None:
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
    message = str(exc.value)
    assert ls_server.url in message and "did not answer list projects within 0.5 s" in message
    assert 0.5 <= elapsed < 3  # one read timeout: asking a hung server again only multiplies the wait
    assert client.find_project("anything") is None  # answers again once resumed


@pytest.fixture
def hung_url() -> str:
    """A TCP server on 127.0.0.1 that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("command", ["pull", "push"])
def test_a_server_that_never_answers_gives_one_line_within_a_bounded_time(
    hung_url: str, tmp_path: Path, command: str
) -> None:
    if command == "pull":
        args = ["pull", "--project", "hung", "--output", str(tmp_path / "out")]
    else:
        image = io.BytesIO()
        Image.new("RGB", (8, 8)).save(image, format="PNG")
        row = {"pair_id": "p1", "prompt": "a fox", "image_0": image.getvalue(), "image_1": image.getvalue()}
        pq.write_table(pa.Table.from_pylist([row]), tmp_path / "candidates.parquet")
        args = ["push", "--candidates", str(tmp_path), "--project", "hung pairs"]
        args += ["--files-root", str(tmp_path / "files")]
    env = {**os.environ, "CANVAS_LABEL_TIMEOUT": "2", TOKEN_ENV: "some-token-123456"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "canvas", "label", *args, "--url", hung_url],
        env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.startswith("canvas: error:") and done.stderr.count("\n") == 1
    assert hung_url in done.stderr and "did not answer list projects within 2 s" in done.stderr
    assert "CANVAS_LABEL_TIMEOUT" in done.stderr
    assert elapsed < 30  # one 2 s read timeout plus start-up, not 4 x 300 s
    assert not (tmp_path / "files").exists()


def test_default_timeouts_bound_a_small_call_under_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Timeouts()
    assert defaults.bound("small", tries=4, backoff=0.25) < 60
    assert defaults.export >= 300 and defaults.small <= 30
    monkeypatch.setenv("CANVAS_LABEL_EXPORT_TIMEOUT", "45")
    assert Timeouts.from_env().export == 45
    monkeypatch.setenv("CANVAS_LABEL_TIMEOUT", "soon")
    with pytest.raises(CanvasError, match="CANVAS_LABEL_TIMEOUT must be a number of seconds"):
        Timeouts.from_env()


def test_two_starts_at_once_run_one_server_and_stop_finds_every_server_of_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = (tmp_path / "ls").resolve()
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    start = [sys.executable, "-m", "canvas", "label", "server", "start", "--data-dir", str(data_dir)]
    procs = [subprocess.Popen(start, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    procs.append(subprocess.Popen(start, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=240) for p in procs]
    try:
        assert [p.returncode for p in procs] == [0, 0], outs
        servers = data_dir_processes(data_dir)
        assert len(servers) == 1, servers  # one server on one SQLite, no orphan
        (pid,) = servers
        urls = {re.search(r"running at (\S+)", out).group(1) for out, _ in outs}
        assert urls == {f"http://127.0.0.1:{servers[pid]}"}

        # The record lost (an orphan): status still sees it, a further start adopts it, spawns nothing.
        (data_dir / "label-studio.pid").unlink()
        assert main(["label", "server", "status", "--data-dir", str(data_dir)]) == 0
        assert f"(pid {pid})" in capsys.readouterr().out
        assert main(["label", "server", "start", "--data-dir", str(data_dir)]) == 0
        assert f"(pid {pid})" in capsys.readouterr().out
        assert data_dir_processes(data_dir) == servers
        (data_dir / "label-studio.pid").unlink()
    finally:
        assert main(["label", "server", "stop", "--data-dir", str(data_dir)]) == 0
        left = data_dir_processes(data_dir)
        for orphan in left:  # never leave a server behind, even when the test fails
            os.kill(orphan, signal.SIGKILL)
    assert not left
    assert main(["label", "server", "status", "--data-dir", str(data_dir)]) == 3
