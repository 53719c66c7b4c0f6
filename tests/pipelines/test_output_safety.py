"""Output folders of `canvas curate` and `canvas generate`: only a previous output of the same command is
replaced; inputs, foreign folders and the current folder are never deleted; concurrent runs are refused;
hostile inputs end in exit 0 (in = kept + rejected) or one line and exit 2."""

from __future__ import annotations

import fcntl
import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from canvas.cli import main
from canvas.core.errors import CanvasError
from canvas.core.outputs import MARKER, commit_output, prepare_output

# Every optional stage off: the runs take a second or two and need no model.
FAST_CONFIG = "".join(
    f"{s}:\n  enabled: false\n"
    for s in ("basic_filter", "exact_dedup", "near_dedup", "clip", "nsfw", "semdedup")
) + ("clip_score:\n  mode: 'off'\n")


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "shard.parquet"
    path.parent.mkdir()
    pq.write_table(
        pa.table({"key": ["a", "b", "c"], "caption": ["x", "y", "z"], "image": [_png(i) for i in range(3)]}),
        path,
    )
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "fast.yaml"
    path.write_text(FAST_CONFIG)
    return path


def _curate(inputs: list[Path | str], output: Path | str, config: Path, *flags: str) -> list[str]:  # the argv
    return ["curate", "--input", *map(str, inputs), "--output", str(output), "--config", str(config), *flags]


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("canvas: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_input_inside_output_is_refused_even_with_overwrite_and_stays(
    shard: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = shard.parent
    (folder / "notes.txt").write_text("mine")
    before = _tree(folder)
    for flags in ((), ("--overwrite",)):
        assert main(_curate([shard], folder, config, *flags)) == 2
        _one_line_error(capsys, "lies inside --output", "--overwrite does not change this")
        assert _tree(folder) == before
    # the parent of the input's folder, and the folder given as the input itself
    assert main(_curate([folder], folder.parent, config, "--overwrite")) == 2
    _one_line_error(capsys, "lies inside --output")
    assert _tree(folder) == before


def test_an_input_named_with_a_tilde_inside_the_output_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output got expanduser() and the input check did not: `prompts: ~/out/prompts.txt` with
    `output: ~/out --overwrite` passed, and the commit deleted the prompts file."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "prompts.txt").write_text("a cat\n")
    refused = pytest.raises(CanvasError, match="lies inside --output")
    with refused, prepare_output("~/out", "generate", ["~/out/prompts.txt"], overwrite=True):
        pass
    assert (tmp_path / "out" / "prompts.txt").read_text() == "a cat\n"


def test_stale_folders_of_another_output_are_not_matched_as_a_pattern(tmp_path: Path) -> None:
    """The killed-run cleanup globbed `.NAME.partial-*` with NAME as a pattern: `--output 'run[1]'` removed
    `.run1.partial-*`, another output's (perhaps running) temporary folder."""
    other = tmp_path / ".run1.partial-abc"
    other.mkdir()
    with prepare_output(str(tmp_path / "run[1]"), "curate", [], overwrite=False):
        pass
    assert other.is_dir()


def test_foreign_folder_is_refused_untouched_and_replaced_with_overwrite(
    shard: Path, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    assert main(_curate([shard], out, config)) == 2
    _one_line_error(capsys, "files not written by canvas curate", "--overwrite")
    assert _tree(out) == {"holiday.jpg": b"precious"}
    assert not list(tmp_path.glob(".photos.partial-*"))

    assert main(_curate([shard], out, config, "--overwrite")) == 0
    assert not (out / "holiday.jpg").exists()
    assert json.loads((out / MARKER).read_text())["command"] == "curate"
    assert pq.read_table(out / "curated").num_rows == 3


def test_empty_folder_and_own_previous_output_are_replaced(
    shard: Path, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert main(_curate([shard], out, config)) == 0  # an empty folder is fine
    (out / "stale.txt").write_text("from the first run")
    assert main(_curate([shard], out, config)) == 0  # our own output: replaced whole
    assert not (out / "stale.txt").exists() and pq.read_table(out / "curated").num_rows == 3
    assert not list(tmp_path.glob(".out.partial-*")) and not list(tmp_path.glob(".out.old-*"))
    capsys.readouterr()

    # another command's output is not ours to replace
    (out / MARKER).write_text(json.dumps({"command": "generate"}))
    assert main(_curate([shard], out, config)) == 2
    _one_line_error(capsys, "the output of canvas generate", "--overwrite")


def test_output_that_is_the_current_folder_is_one_line_before_the_run(
    shard: Path,
    config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("keep")
    monkeypatch.chdir(work)
    for output in (".", "..", "./"):
        assert main(_curate([shard], output, config, "--overwrite")) == 2
        _one_line_error(capsys, "current folder")
    assert (work / "keep.txt").read_text() == "keep" and shard.exists()
    assert not list(tmp_path.glob(".*.partial-*"))


def test_a_second_run_into_a_locked_output_fails_at_once(
    shard: Path, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    stale = tmp_path / ".out.partial-123456abcdef"  # the running job's temp folder
    stale.mkdir()
    with open(tmp_path / ".out.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running job holds it
        assert main(_curate([shard], out, config)) == 2
        _one_line_error(capsys, "another canvas run is writing", "wait for it")
        assert stale.exists() and not out.exists()  # the running job's temp folder is left alone
    assert main(_curate([shard], out, config)) == 0  # lock released: the run goes, and cleans up
    assert not stale.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent_is_one_line(
    shard: Path, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        assert main(_curate([shard], parent / "out", config)) == 2
        _one_line_error(capsys, "cannot be written")
    finally:
        parent.chmod(0o755)


def test_a_file_where_a_folder_should_be_is_one_line(
    shard: Path, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    assert main(_curate([shard], blocker, config, "--overwrite")) == 2
    _one_line_error(capsys, "is a file, not a folder")
    assert main(_curate([shard], blocker / "out", config)) == 2
    _one_line_error(capsys, "cannot be written")
    assert blocker.read_text() == "a file"


def _hostile_inputs(root: Path) -> dict[str, Path]:
    """name -> an input path, each a careless or hostile input."""
    (root / "no_shards").mkdir()
    (root / "no_shards" / "readme.txt").write_text("nothing here")
    (root / "text.parquet").write_text("key,caption,image\na,b,c\n")
    (root / "zero_bytes.parquet").write_bytes(b"")
    empty = pa.schema([("key", pa.string()), ("caption", pa.string()), ("image", pa.binary())])
    pq.write_table(empty.empty_table(), root / "no_rows.parquet")
    tables = {
        "int_image": {"key": ["a", "b"], "caption": ["x", "y"], "image": [1, 2]},
        "string_image": {"key": ["a", "b"], "caption": ["x", "y"], "image": ["not", "bytes"]},
        "int_caption_and_key": {"key": [1, 2], "caption": [3, 4], "image": [_png(0), _png(1)]},
        "null_everything": {
            "key": pa.array([None, None], pa.string()),
            "caption": pa.array([None, None], pa.string()),
            "image": pa.array([None, None], pa.binary()),
        },
        "duplicate_keys": {"key": ["a", "a"], "caption": ["x", "x"], "image": [_png(0), b"\x89PNG junk"]},
    }
    for name, columns in tables.items():
        pq.write_table(pa.table(columns), root / f"{name}.parquet")
    paths = {name: root / f"{name}.parquet" for name in tables}
    paths.update(
        missing=root / "missing.parquet",
        no_shards=root / "no_shards",
        text=root / "text.parquet",
        zero_bytes=root / "zero_bytes.parquet",
        no_rows=root / "no_rows.parquet",
    )
    return paths


HOSTILE = [
    "missing",
    "no_shards",
    "text",
    "zero_bytes",
    "no_rows",
    "int_image",
    "string_image",
    "int_caption_and_key",
    "null_everything",
    "duplicate_keys",
]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_inputs_end_in_exit_0_or_one_line(
    case: str, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = _hostile_inputs(inputs)[case]
    before = _tree(tmp_path)
    out = tmp_path / "out"
    rc = main(_curate([path], out, config))
    captured = capsys.readouterr()
    assert rc in (0, 2) and "Traceback" not in captured.err, captured.err
    written = {p for p in set(_tree(tmp_path)) - set(before) if not p.startswith("out/")}
    assert written <= {"fast.yaml", ".out.lock"}, written  # nothing outside the output but its lock
    assert not list(tmp_path.glob(".out.partial-*"))
    if rc == 2:
        assert captured.err.startswith("canvas: error: ") and captured.err.count("\n") == 1, captured.err
        assert not out.exists()
        return
    report = json.loads((out / "report.json").read_text())
    rows_in = 0 if case == "no_rows" else 2
    kept, rejected = pq.read_table(out / "curated").num_rows, pq.read_table(out / "rejected").num_rows
    assert report["input_count"] == rows_in == kept + rejected


def test_generate_refuses_foreign_folders_and_prompts_inside_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cands"
    out.mkdir()
    prompts = out / "prompts.txt"
    prompts.write_text("a cat\n")
    flags = ["--steps", "1", "--threads", "1"]
    argv = ["generate", "--prompts", str(prompts), "--output", str(out), *flags]
    for extra in ((), ("--overwrite",)):
        assert main([*argv, *extra]) == 2
        _one_line_error(capsys, "lies inside --output")
        assert prompts.read_text() == "a cat\n"
    outside = tmp_path / "prompts.txt"
    outside.write_text("a cat\n")
    assert main(["generate", "--prompts", str(outside), "--output", str(out), *flags]) == 2
    _one_line_error(capsys, "files not written by canvas generate", "--overwrite")
    assert prompts.exists()


def test_generate_replaces_its_own_output_and_with_overwrite_a_foreign_one(
    tiny_presets: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n\n")
    out = tmp_path / "cands"
    out.mkdir()
    (out / "old.txt").write_text("foreign")
    argv = ["generate", "--prompts", str(prompts), "--output", str(out), "--steps", "1", "--threads", "1"]
    assert main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MARKER, "candidates.parquet", "rejected_prompts.jsonl"]
    )
    first = (out / "candidates.parquet").read_bytes()
    assert main(argv) == 0  # a rerun over its own output
    assert (out / "candidates.parquet").read_bytes() == first
    assert json.loads((out / MARKER).read_text())["command"] == "generate"
    assert not list(tmp_path.glob(".cands.partial-*"))


def _write(path: str, text: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(text.encode())


def test_remote_output_is_checked_by_its_marker_and_replaced_whole(object_store: str, tmp_path: Path) -> None:
    out = f"{object_store}bucket/out"
    _write(f"{out}/theirs.txt", "foreign")
    with (
        pytest.raises(CanvasError, match="files not written by canvas curate"),
        prepare_output(out, "curate"),
    ):
        pass
    inside = prepare_output(out, "curate", [f"{out}/shard.parquet"], overwrite=True)
    with pytest.raises(CanvasError, match="lies inside --output"), inside:
        pass
    assert (tmp_path / "bucket/out/theirs.txt").read_text() == "foreign"

    for run in ("first", "second"):  # --overwrite replaces the foreign files, then a rerun its own output
        with prepare_output(
            out, "curate", [f"{object_store}bucket/in.parquet"], overwrite=run == "first"
        ) as tmp:
            _write(f"{tmp}/curated/part-0.parquet", run)
            _write(f"{tmp}/report.json", run)
            if run == "first":
                _write(f"{tmp}/only-in-first.txt", run)
            commit_output(tmp, out, "curate")
        files = {str(p.relative_to(tmp_path / "bucket/out")) for p in (tmp_path / "bucket/out").rglob("*")}
        files -= {"curated"}
        expected = {"curated/part-0.parquet", "report.json", MARKER} | (
            {"only-in-first.txt"} if run == "first" else set()
        )
        assert files == expected, files
        assert (tmp_path / "bucket/out/report.json").read_text() == run
        assert json.loads((tmp_path / "bucket/out" / MARKER).read_text())["command"] == "curate"
        assert not [p for p in (tmp_path / "bucket").iterdir() if "partial" in p.name]
    with pytest.raises(CanvasError, match="the output of canvas curate"), prepare_output(out, "generate"):
        pass
    with pytest.raises(RuntimeError), prepare_output(out, "curate") as tmp:  # a failed run leaves no temp
        _write(f"{tmp}/curated/part-0.parquet", "failed")
        raise RuntimeError("the pipeline failed")
    assert not [p for p in (tmp_path / "bucket").iterdir() if "partial" in p.name and any(p.rglob("*.*"))]
