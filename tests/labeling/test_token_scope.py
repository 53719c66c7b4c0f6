"""The API token `canvas label server start` stores belongs to that local server: a client for another URL
never sends it (it did: `label push --url http://shared-host` sent the local admin's token there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canvas.core.errors import CanvasError
from canvas.labeling.client import LabelStudioClient, connect
from canvas.labeling.server import STATE_FILE, TOKEN_ENV, TOKEN_FILE, read_token

LOCAL = "http://127.0.0.1:8089"


@pytest.fixture
def started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir as `canvas label server start` leaves it (state with its URL, the stored token)."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.setenv("CANVAS_HOME", str(tmp_path))
    data_dir = tmp_path / "labelstudio"
    data_dir.mkdir()
    (data_dir / STATE_FILE).write_text(json.dumps({"url": LOCAL, "files_root": str(tmp_path / "files")}))
    (data_dir / TOKEN_FILE).write_text("local-admin-token-0123456789\n")
    return data_dir


def test_the_stored_token_goes_only_to_its_own_server(started: Path) -> None:
    assert read_token(started, LOCAL + "/") == "local-admin-token-0123456789"
    assert LabelStudioClient(LOCAL).token == "local-admin-token-0123456789"
    assert connect(LOCAL, data_dir=started)[0].token == "local-admin-token-0123456789"
    assert read_token(started, "http://shared-host:8080") is None
    with pytest.raises(
        CanvasError, match=f"no Label Studio API token for http://shared-host:8080: set {TOKEN_ENV}"
    ):
        connect("http://shared-host:8080", data_dir=started)
    with pytest.raises(CanvasError, match="no Label Studio API token for http://shared-host:8080"):
        LabelStudioClient("http://shared-host:8080")


def test_the_environments_token_goes_where_it_is_told(started: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "shared-server-token-abcdef")
    assert connect("http://shared-host:8080", data_dir=started)[0].token == "shared-server-token-abcdef"
