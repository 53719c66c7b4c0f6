"""`canvas.core.atomic`: a file or folder is replaced whole, or left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from canvas.core.atomic import atomic_path, write_json_atomic, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "summary.json", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    write_json_atomic(target, {"a": 1}, indent=2)
    assert target.read_text() == '{\n  "a": 1\n}'


def test_a_folder_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint-2"
    (target / "stale").mkdir(parents=True)
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "weights").write_text("w")
    assert sorted(p.name for p in target.iterdir()) == ["weights"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-2"]
