"""Hostile inputs for the commands the other hostile-input tables do not cover: generate's prompt files,
eval's paths, index build's curated folder, subset's queries, and flags of the wrong type anywhere.

Every case must end in exit code 2 with one `canvas: error:` line, no traceback, and nothing written
where the command would have written its output.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from canvas.cli import main


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _parquet(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


# name -> (argv builder given a temp dir and the output path, a word the one line must hold)
CASES: dict[str, tuple[Callable[[Path, Path], list[str]], str]] = {
    "generate: missing prompt file": (
        lambda d, out: ["generate", "--prompts", str(d / "none.txt"), "--output", str(out)],
        "not found",
    ),
    "generate: binary garbage .txt": (
        lambda d, out: [
            "generate",
            "--prompts",
            str(_write(d / "p.txt", b"\xff\xfe\x00\x81" * 50)),
            "--output",
            str(out),
        ],
        "UTF-8",
    ),
    "generate: corrupt .gz": (
        lambda d, out: [
            "generate",
            "--prompts",
            str(_write(d / "p.txt.gz", b"not gzip at all")),
            "--output",
            str(out),
        ],
        "p.txt.gz",
    ),
    "generate: only comments": (
        lambda d, out: [
            "generate",
            "--prompts",
            str(_write(d / "p.txt", gzip.decompress(gzip.compress(b"# a\n\n# b\n")))),
            "--output",
            str(out),
        ],
        "no prompts",
    ),
    "generate: parquet without caption or prompt": (
        lambda d, out: [
            "generate",
            "--prompts",
            str(_parquet(d / "p.parquet", pa.table({"text": ["a"]}))),
            "--output",
            str(out),
        ],
        "caption",
    ),
    "generate: a folder as prompt file": (
        lambda d, out: ["generate", "--prompts", str(d), "--output", str(out)],
        "",
    ),
    "generate: images per prompt is text": (
        lambda d, out: [
            "generate",
            "--prompts",
            str(_write(d / "p.txt", b"a cat\n")),
            "--output",
            str(out),
            "--images-per-prompt",
            "two",
        ],
        "images-per-prompt",
    ),
    "eval: missing LoRA folder": (
        lambda d, out: [
            "eval",
            "--lora",
            str(d / "nolora"),
            "--prompts",
            str(_write(d / "p.txt", b"a\n")),
            "--output",
            str(out),
        ],
        "--lora",
    ),
    "eval: LoRA folder without weights": (
        lambda d, out: [
            "eval",
            "--lora",
            str(d),
            "--prompts",
            str(_write(d / "p.txt", b"a\n")),
            "--output",
            str(out),
        ],
        "LoRA",
    ),
    "eval: steps is a float": (
        lambda d, out: [
            "eval",
            "--lora",
            str(d),
            "--prompts",
            str(d),
            "--steps",
            "2.5",
            "--output",
            str(out),
        ],
        "steps",
    ),
    "generate: --pretrained a missing folder": (
        lambda d, out: [
            "generate",
            "--prompts",
            str(_write(d / "p.txt", b"a cat\n")),
            "--output",
            str(out),
            "--pretrained",
            str(d / "my-model"),
        ],
        "no such folder",
    ),
    "generate: --pretrained a folder that is no pipeline": (
        lambda d, out: [
            "generate",
            "--prompts",
            str(_write(d / "p.txt", b"a cat\n")),
            "--output",
            str(out),
            "--pretrained",
            str(d),
        ],
        "model_index.json",
    ),
    "generate: --pretrained a hub id not on this machine": (
        lambda d, out: [
            "generate",
            "--prompts",
            str(_write(d / "p.txt", b"a cat\n")),
            "--output",
            str(out),
            "--pretrained",
            "acme/no-such-model",
        ],
        "cache",
    ),
    "models init: --dir is a file": (
        lambda d, out: ["models", "init", "--dir", str(_write(d / "f", b"x"))],
        "is a file",
    ),
    "demo: the output is a file": (
        lambda d, out: ["demo", "--quick", "--output", str(_write(d / "f", b"x"))],
        "not a folder",
    ),
    "index build: no curated folder": (
        lambda d, out: ["index", "build", "--curated", str(d / "nothing"), "--output", str(out)],
        "nothing",
    ),
    "index build: curated without shards": (
        lambda d, out: ["index", "build", "--curated", str(d), "--output", str(out)],
        "",
    ),
    "index query: no index": (
        lambda d, out: ["index", "query", "--index", str(d / "noindex"), "--text", "a cat"],
        "noindex",
    ),
    "demo: seed is text": (
        lambda d, out: ["demo", "--output", str(out), "--seed", "zero"],
        "seed",
    ),
    "demo: broken config": (
        lambda d, out: [
            "demo",
            "--output",
            str(out),
            "--config",
            str(_write(d / "c.yaml", b"seed: [1, 2\n")),
        ],
        "YAML",
    ),
    "demo: unknown config key": (
        lambda d, out: ["demo", "--output", str(out), "--config", str(_write(d / "c.yaml", b"sed: 1\n"))],
        "did you mean",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_one_line_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, word = CASES[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    out = tmp_path / "out"
    code = main(build(inputs, out))
    err = capsys.readouterr().err
    assert code == 2, (case, err)
    assert err.startswith("canvas: error:") and err.count("\n") == 1 and "Traceback" not in err, (case, err)
    assert word in err, (case, err)
    assert not out.exists(), f"{case}: wrote {sorted(p.name for p in out.rglob('*'))}"
