"""The annotator's page in a real browser: an annotator added with `canvas label annotators add` logs in to
the session's Label Studio in headless Chromium, sees the prompt and both images, answers three pairs with
the keys 1, 2, 3, and `canvas label pull` gets those three votes under their user id.

A failure leaves a screenshot of the page in the test's tmp_path (conftest's `browser_page`).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image
from playwright.sync_api import expect

from canvas.cli import main
from canvas.labeling.push import push_candidates
from canvas.labeling.schema import CHOICES, HOTKEYS, LABELS
from canvas.labeling.server import LabelStudioServer

pytestmark = pytest.mark.labelstudio

TITLE = "browser pairs"
EMAIL = "browser-ann@test.local"
PROMPT = ".lsf-richtext__line"  # where LS renders the <Text name="prompt"> value
IMAGES = "img[alt=image]"  # one per <Image> tag
BROKEN = "There was an issue loading URL"  # what LS shows instead of an image it cannot load


def _add_annotator(
    server: LabelStudioServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    secret = tmp_path / "annotator.password"
    args = ["label", "annotators", "add", "--email", EMAIL, "--password-file", str(secret)]
    assert main([*args, "--url", server.url, "--data-dir", str(server.data_dir)]) == 0
    user_id = int(re.search(r"\(user id (\d+)\)", capsys.readouterr().out).group(1))
    return user_id, secret.read_text().strip()


def _log_in(page: Any, url: str, password: str) -> None:
    page.goto(f"{url}/user/login/")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda u: "/user/login" not in u)
    me = page.request.get(f"{url}/api/current-user/whoami")  # the browser's session cookie, no token
    assert me.ok and me.json()["email"] == EMAIL


def _loaded_image_sizes(page: Any) -> list[list[int]]:
    """Natural sizes of the task's two images once both finished loading. A broken one fails here with
    Label Studio's own message (it replaces an image it cannot load by an error box, not a broken <img>)."""
    state = page.wait_for_function(
        """([broken, images]) => document.body.innerText.includes(broken) ? 'broken'
            : [...document.querySelectorAll(images)].filter(i => i.complete && i.naturalWidth > 0).length === 2
            && 'loaded'""",
        arg=[BROKEN, IMAGES],
    ).json_value()
    if state == "broken":
        raise AssertionError(page.get_by_text(BROKEN).first.locator("..").inner_text())
    return page.locator(IMAGES).evaluate_all("els => els.map(e => [e.naturalWidth, e.naturalHeight])")


def _answer(page: Any, choice: str) -> int:
    """Press the choice's hotkey, check it is the one selected, submit with Ctrl+Enter; the annotation id."""
    page.keyboard.press(HOTKEYS[choice])
    radios = page.locator("input[type=radio]")  # one per Choice, in CHOICES order
    expect(radios).to_have_count(len(CHOICES))
    for i, c in enumerate(CHOICES):  # polled, so the UI may take its time to react to the key
        expect(radios.nth(i)).to_be_checked(checked=c == choice)
    with page.expect_response(
        lambda r: r.request.method == "POST" and re.search(r"/api/tasks/\d+/annotations", r.url)
    ) as saved:
        page.keyboard.press("Control+Enter")
    assert saved.value.status == 201, saved.value.text()
    return int(saved.value.json()["id"])


def test_annotator_labels_three_pairs_with_hotkeys_in_chromium_and_pull_gets_their_votes(
    ls_server: LabelStudioServer,
    candidates: Path,
    browser_page: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = {r["prompt"]: r for r in pq.read_table(candidates / "candidates.parquet").to_pylist()}
    pushed = push_candidates(candidates, TITLE, url=ls_server.url, data_dir=ls_server.data_dir)
    assert pushed.created == len(rows) == 4
    user_id, password = _add_annotator(ls_server, tmp_path, capsys)

    page = browser_page
    _log_in(page, ls_server.url, password)
    page.goto(f"{ls_server.url}/projects/{pushed.project_id}/data?labeling=1")  # "Label All Tasks"
    expect(page.get_by_text("Which image fits the prompt better?")).to_be_visible()

    voted: dict[str, str] = {}  # pair_id -> choice
    prompt, text = page.locator(PROMPT).first, ""
    for choice in CHOICES:  # keys 1, 2, 3 on three tasks in a row
        if text:  # wait for the next task to replace the one just submitted
            expect(prompt).not_to_have_text(text)
        expect(prompt).to_be_visible()
        text = prompt.inner_text().strip()
        assert text in rows, f"prompt {text!r} is none of the pushed pairs'"
        row = rows[text]
        expected_sizes = [list(Image.open(io.BytesIO(row[f"image_{i}"])).size) for i in (0, 1)]
        assert _loaded_image_sizes(page) == expected_sizes
        _answer(page, choice)
        voted[row["pair_id"]] = choice

    out = tmp_path / "pull"
    pull = ["label", "pull", "--project", TITLE, "--output", str(out)]
    assert main([*pull, "--url", ls_server.url, "--data-dir", str(ls_server.data_dir)]) == 0
    assert "3 pairs" in capsys.readouterr().out
    got = {r["pair_id"]: r for r in pq.read_table(out / "preferences.parquet").to_pylist()}
    assert {p: (r["label_0"], r["label_1"]) for p, r in got.items()} == {
        p: LABELS[c] for p, c in voted.items()
    }
    for row in got.values():
        assert (row["user_id"], row["annotator_ids"], row["num_votes"]) == (user_id, [user_id], 1)
    report = json.loads((out / "annotators.json").read_text())
    assert report["annotators"][str(user_id)]["count"] == 3
    assert report["annotators"][str(user_id)]["email"] == EMAIL
