"""Hostile candidates files for `canvas label push`: a bad row is a recorded rejection, a bad file one line.

Every case checks what a user sees: exit 0 or 2, no traceback, one line on error, no file written outside
the local-files root, and (on success) rows = pushed + rejected, with the rejections listed.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from canvas.cli import main
from canvas.labeling.client import LabelStudioClient
from canvas.labeling.local_files import IMAGES_SUBDIR, project_images_dir
from canvas.labeling.server import LabelStudioServer

pytestmark = pytest.mark.labelstudio

ESCAPE = f"canvas-escape-{uuid.uuid4().hex[:8]}"


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (value, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def _row(
    pair_id: object, image_0: object = None, image_1: object = None, prompt: object = "a red fox"
) -> dict:
    return {
        "pair_id": pair_id,
        "prompt": prompt,
        "image_0": _png(10) if image_0 is None else image_0,
        "image_1": _png(20) if image_1 is None else image_1,
    }


SCHEMA = pa.schema(
    [("pair_id", pa.string()), ("prompt", pa.string()), ("image_0", pa.binary()), ("image_1", pa.binary())]
)
NULL = object()  # a null cell (None means "a default PNG" in _row)


def _write(path: Path, rows: list[dict]) -> Path:
    fixed = [{k: (None if v is NULL else v) for k, v in row.items()} for row in rows]
    pq.write_table(pa.Table.from_pylist(fixed, schema=SCHEMA), path)
    return path


def _good(tag: str) -> dict:
    return _row(f"good-{tag}")


# (case, rows or raw bytes, expected exit code, expected rejected count, reason fragment)
CASES = [
    ("traversal", [_good("t"), _row(f"../../../{ESCAPE}"), _row(f"../../../../../../../../../tmp/{ESCAPE}")], 0, 2, "pair_id"),
    ("absolute", [_good("a"), _row(f"/tmp/{ESCAPE}-abs")], 0, 1, "pair_id"),
    ("nul and newline", [_good("n"), _row("a\x00b"), _row("a\nb"), _row("")], 0, 3, "pair_id"),
    ("duplicates", [_good("d"), _good("d"), _row("other-d")], 0, 1, "duplicate"),
    ("null image", [_good("i"), _row("null-image", image_0=NULL)], 0, 1, "image_0"),
    ("non-image bytes", [_good("b"), _row("not-png", image_1=b"\x89PNG but not really")], 0, 1, "image_1"),
    ("null pair id and prompt", [_good("p"), _row(NULL), _row("no-prompt", prompt=NULL)], 0, 2, "missing"),
    ("all rows hostile", [_row("../x"), _row("/etc/y")], 2, None, "no pair to push"),
    ("corrupt parquet", b"PAR1 this is not parquet PAR1", 2, None, "not a readable Parquet"),
    ("missing columns", "missing", 2, None, "lacks columns"),
    ("wrong column type", "int-image", 2, None, "image_0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "content", "code", "rejected", "fragment"), CASES, ids=[c[0] for c in CASES]
)
def test_hostile_candidates_are_rejections_or_one_line_errors_and_nothing_escapes(
    ls_server: LabelStudioServer,
    ls_client: LabelStudioClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    content: object,
    code: int,
    rejected: int | None,
    fragment: str,
) -> None:
    title = f"hostile {case}"
    path = tmp_path / "candidates.parquet"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "missing":
        pq.write_table(pa.table({"pair_id": ["p1"], "prompt": ["x"]}), path)
    elif content == "int-image":
        pq.write_table(pa.table({"pair_id": ["p1"], "prompt": ["x"], "image_0": [1], "image_1": [2]}), path)
    else:
        _write(path, content)
    folder = (
        ls_server.files_root / IMAGES_SUBDIR / "any-project"
    )  # where "../" leads: same depth as the real one
    escapes = [
        (folder / f"../../../{ESCAPE}_0.png").resolve(),
        Path(f"/tmp/{ESCAPE}_0.png"),
        Path(f"/tmp/{ESCAPE}-abs_0.png"),
        (folder / "../x_0.png").resolve(),
    ]
    before = set(ls_server.data_dir.rglob("*"))
    folders = set((ls_server.files_root / IMAGES_SUBDIR).glob("*"))

    report = tmp_path / "rejected.jsonl"
    argv = [
        "label",
        "push",
        "--candidates",
        str(path),
        "--project",
        title,
        "--data-dir",
        str(ls_server.data_dir),
    ]
    exit_code = main([*argv, "--rejected", str(report)])  # any exception fails the test: no traceback

    out, err = capsys.readouterr()
    assert exit_code == code, err
    assert not [p for p in escapes if p.exists()]
    new = {p for p in set(ls_server.data_dir.rglob("*")) - before if p.is_file()}
    outside = [p for p in new if not p.resolve().is_relative_to(ls_server.files_root.resolve())]
    assert not [p for p in outside if not re.search(r"\.(sqlite3.*|log)$", p.name)], outside
    if code == 2:
        assert err.startswith("canvas: error:") and err.count("\n") == 1 and fragment in err
        # Validated before anything happens: no project, no image folder.
        assert ls_client.find_project(title) is None
        assert set((ls_server.files_root / IMAGES_SUBDIR).glob("*")) == folders
        return
    rows = pq.read_table(path).num_rows
    match = re.search(r"(\d+) rows = (\d+) pushed \+ (\d+) rejected", out)
    assert match, out
    total, pushed, n_rejected = map(int, match.groups())
    assert (total, n_rejected) == (rows, rejected) and pushed + n_rejected == rows
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(records) == rejected and all(
        fragment in r["reason"] for r in records if case != "null pair id and prompt"
    )
    project_id = ls_client.find_project(title)
    folder = project_images_dir(ls_server.files_root, project_id, title)
    pushed_ids = {data["pair_id"] for _, data in ls_client.iter_task_data(project_id)}
    assert len(pushed_ids) == pushed and all(p.startswith(("good-", "other-")) for p in pushed_ids)
    written = sorted(p.name for p in folder.iterdir())
    assert written == sorted(f"{p}_{i}.png" for p in pushed_ids for i in (0, 1))
    assert folder.resolve().is_relative_to((ls_server.files_root / IMAGES_SUBDIR).resolve())


def test_a_same_named_project_that_is_not_a_pairs_project_is_refused(
    ls_server: LabelStudioServer,
    ls_client: LabelStudioClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Someone's own project of that title (here a caption-rating one) got the pairs imported into it: its
    annotators saw no images and pull could read none of their answers. Now one line, nothing imported; a
    canvas template differing only in text (headers, hotkeys) is still reused."""
    from canvas.labeling.schema import LABEL_CONFIG

    other = '<View><Text name="caption" value="$text"/><Rating name="stars" toName="caption"/></View>'
    project_id = ls_client.create_project("someone's project", other, 1)
    argv = ["label", "push", "--candidates", str(_write(tmp_path / "c.parquet", [_good("x")]))]
    argv += ["--data-dir", str(ls_server.data_dir)]
    assert main([*argv, "--project", "someone's project"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"(id {project_id}) is not a canvas pairs project" in err
    assert not list(ls_client.iter_tasks(project_id))
    older = LABEL_CONFIG.replace("Which image fits the prompt better?", "Pick one").replace(
        'hotkey="3"', 'hotkey="t"'
    )
    kept = ls_client.create_project("older pairs", older, 1)
    assert main([*argv, "--project", "older pairs"]) == 0
    assert ls_client.find_project("older pairs") == kept and len(list(ls_client.iter_tasks(kept))) == 1


def test_two_pushes_creating_one_title_at_once_leave_one_project(
    ls_server: LabelStudioServer, ls_client: LabelStudioClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race, interleaved by hand: push B looked for the title before push A created it, then creates its
    own. Both used to remain (and every later push or pull stopped on "2 projects are titled ...")."""
    from canvas.labeling.push import ensure_project
    from canvas.labeling.schema import LABEL_CONFIG

    title = "pairs pushed twice at once"
    first = ls_client.create_project(title, LABEL_CONFIG, 1)  # push A's
    racing = LabelStudioClient(ls_server.url, ls_server.token)
    real_find, looked = racing.find_project, []

    def find_before_a_created(t: str) -> int | None:  # push B's first look came before A's create
        looked.append(t)
        return None if looked.count(title) == 1 and t == title else real_find(t)

    monkeypatch.setattr(racing, "find_project", find_before_a_created)
    assert ensure_project(racing, title, overlap=1) == first
    assert ls_client.project_ids(title) == [first]
