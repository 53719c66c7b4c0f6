"""One real Label Studio server per test session (stopped by PID), one set of generated candidates, and a
headless Chromium page (Playwright on Debian's `chromium`) that is photographed when its test fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A fresh headless Chromium page: Debian's browser, never one Playwright downloads."""
    from playwright.sync_api import expect, sync_playwright

    from canvas.core.browser import chromium_path

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)  # 2 shared cores: a task can take seconds to load
            expect.set_options(timeout=30_000)
            yield page
        finally:
            browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """On a failure in a test that drives `browser_page`, keep what the page showed: a screenshot and its
    HTML in the test's tmp_path, named in the failure report."""
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    page = funcargs.get("browser_page")
    if report.when != "call" or not report.failed or page is None:
        return
    shot = funcargs["tmp_path"] / "failure-screenshot.png"
    try:
        page.screenshot(path=str(shot), full_page=True)
        shot.with_suffix(".html").write_text(page.content())
        where = f"{shot} (and {shot.with_suffix('.html').name}); page URL {page.url}"
    except Exception as exc:  # a crashed browser must not hide the test's own failure
        where = f"no screenshot: {type(exc).__name__}: {exc}"
    report.sections.append(("labeling page screenshot", where))
