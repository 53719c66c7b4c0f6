"""The one prompt-file reader (generate, train ddpo and eval all use it): its rules, file by file kind."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from canvas.core.errors import CanvasError
from canvas.core.formats.prompts import PromptEntry, read_prompt_entries, read_prompts

TEXT = "\ufeff# prompts for the demo\na red ball\n\n   \n  # an indented comment\n  a blue cube \r\nc#\n"


def test_text_skips_comments_and_blank_lines_and_numbers_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text(TEXT, encoding="utf-8")
    assert read_prompt_entries(path) == [
        PromptEntry(2, "a red ball"),
        PromptEntry(6, "a blue cube"),
        PromptEntry(7, "c#"),  # only a leading `#` makes a comment
    ]
    assert read_prompts(path) == ["a red ball", "a blue cube", "c#"]


def test_gzipped_text_follows_the_same_rules(tmp_path: Path) -> None:
    path = tmp_path / "p.txt.gz"
    path.write_bytes(gzip.compress(TEXT.encode("utf-8")))
    assert read_prompts(path) == ["a red ball", "a blue cube", "c#"]


def test_parquet_caption_column_keeps_empty_captions_visible(tmp_path: Path) -> None:
    path = tmp_path / "curated.parquet"
    captions = ["a cat ", None, "  ", "#sunset", "a cat "]
    pq.write_table(pa.table({"key": list("abcde"), "caption": captions, "prompt": ["x"] * 5}), path)
    # caption wins over prompt; a null or blank caption is an empty entry (generate rejects it), and a
    # caption starting with `#` is data, not a comment
    assert [e.text for e in read_prompt_entries(path)] == ["a cat", "", "", "#sunset", "a cat"]
    assert [e.number for e in read_prompt_entries(path)] == [1, 2, 3, 4, 5]
    assert read_prompts(path) == ["a cat", "#sunset", "a cat"]  # duplicates kept: they weight sampling


def test_parquet_prompt_column(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": ["a dog", "a fox"]}), path)
    assert read_prompts(path) == ["a dog", "a fox"]


def _one_line_error(path: Path) -> str:
    with pytest.raises(CanvasError) as caught:
        read_prompts(path)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_unusable_files_are_one_line_errors(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["a cat"]}), tmp_path / "bad.parquet")
    assert "has no caption or prompt column (columns: text)" in _one_line_error(tmp_path / "bad.parquet")
    assert "prompt file not found" in _one_line_error(tmp_path / "missing.txt")
    (tmp_path / "fake.parquet").write_text("a cat\n")
    assert "cannot read" in _one_line_error(tmp_path / "fake.parquet")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    assert "is not UTF-8 text" in _one_line_error(tmp_path / "latin1.txt")
    (tmp_path / "broken.txt.gz").write_bytes(b"not gzip at all")
    assert "is not a readable gzip file" in _one_line_error(tmp_path / "broken.txt.gz")
    (tmp_path / "comments.txt").write_text("# only\n\n# comments\n")
    assert "no prompts in" in _one_line_error(tmp_path / "comments.txt")
    pq.write_table(pa.table({"caption": pa.array([None, ""], pa.string())}), tmp_path / "blank.parquet")
    assert "no prompts in" in _one_line_error(tmp_path / "blank.parquet")
    assert read_prompt_entries(tmp_path / "blank.parquet") == [PromptEntry(1, ""), PromptEntry(2, "")]


def test_a_local_read_does_not_import_beam(tmp_path: Path) -> None:
    # The base layer must stay light: Beam's FileSystems is loaded only for a scheme:// path.
    path = tmp_path / "p.txt"
    path.write_text("a cat\n")
    code = (
        "import sys; from canvas.core.formats.prompts import read_prompts; "
        f"assert read_prompts({str(path)!r}) == ['a cat']; print('apache_beam' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
