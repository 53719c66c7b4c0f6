"""One real Label Studio server per test session (stopped by PID), and one set of generated candidates."""

from __future__ import annotations

from pathlib import Path

import pytest

from canvas.labeling.client import LabelStudioClient
from canvas.labeling.server import LabelStudioServer


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory: pytest.TempPathFactory) -> LabelStudioServer:
    """A real server on 127.0.0.1 with its own data dir (copied from the pre-migrated template)."""
    server = LabelStudioServer(tmp_path_factory.mktemp("labelstudio"))
    server.start()
    yield server
    pid = server.pid
    assert server.stop(), "the session's Label Studio server was not running at teardown"
    assert not server.status().running and pid is not None


@pytest.fixture(scope="session")
def ls_client(ls_server: LabelStudioServer) -> LabelStudioClient:
    return LabelStudioClient(ls_server.url, ls_server.token, retries=2, backoff=0.05)


PROMPTS = [
    "a red apple on a table",
    "a blue car in the rain",
    "a cat asleep on a sofa",
    "a lighthouse at dusk",
]


@pytest.fixture(scope="session")
def candidates(tmp_path_factory: pytest.TempPathFactory, tiny_presets: dict) -> Path:
    """Four candidate pairs from the tiny pipeline through the real Beam pipeline."""
    from canvas.pipelines.generate import run_generation

    out = tmp_path_factory.mktemp("candidates")
    run_generation(PROMPTS, out, pretrained="tiny", images_per_prompt=2, steps=3, seed=11, threads=1)
    return out
