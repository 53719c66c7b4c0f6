"""Candidate generation through Beam RunInference with the tiny diffusers pipeline."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from canvas.cli import main
from canvas.core.formats.candidates import CANDIDATES_SCHEMA
from canvas.core.formats.prompts import read_prompt_entries
from canvas.pipelines.generate import DiffusersPipelineHandler, GenerationRequest, run_generation


def test_generation_is_deterministic_for_a_seed_and_records_rejected_prompts(
    tiny_presets: dict, tmp_path: Path
) -> None:
    prompts = ["a red apple", "a blue car", "", "A  red   apple", "a cat"]
    first = run_generation(prompts, tmp_path / "a", images_per_prompt=3, steps=3, seed=5, threads=1)
    assert (first["prompts"], first["prompts_kept"], first["prompts_rejected"]) == (5, 3, 2)
    assert first["pairs"] == 3 * 3  # every unordered pair of 3 images, for 3 prompts

    table = pq.read_table(tmp_path / "a/candidates.parquet")
    assert table.schema.equals(CANDIDATES_SCHEMA)
    rows = table.to_pylist()
    assert [r["prompt"] for r in rows] == ["a red apple"] * 3 + ["a blue car"] * 3 + ["a cat"] * 3
    assert len({r["pair_id"] for r in rows}) == 9
    for row in rows:
        assert row["seed_0"] != row["seed_1"] and row["image_0"] != row["image_1"]
        assert Image.open(io.BytesIO(row["image_0"])).size == (32, 32)
        assert (row["model"], row["scheduler"], row["steps"]) == ("tiny", "DDIMScheduler", 3)
    rejected = (tmp_path / "a/rejected_prompts.jsonl").read_text().splitlines()
    assert '"reason": "empty prompt"' in rejected[0] and '"reason": "duplicate of prompt #0"' in rejected[1]

    # Same seed, prompts reordered and one added, through the CLI: the shared prompts give the very
    # same pairs and pixels.
    txt = tmp_path / "prompts.txt"
    txt.write_text("a dog\na cat\na blue car\na red apple\n")
    flags = ["--images-per-prompt", "3", "--steps", "3", "--seed", "5", "--threads", "1"]
    assert main(["generate", "--prompts", str(txt), "--output", str(tmp_path / "b"), *flags]) == 0
    again = {r["pair_id"]: r for r in pq.read_table(tmp_path / "b/candidates.parquet").to_pylist()}
    for row in rows:
        other = again[row["pair_id"]]
        assert (other["image_0"], other["image_1"]) == (row["image_0"], row["image_1"])


def test_another_seed_gives_other_images(tiny_presets: dict) -> None:
    handler = DiffusersPipelineHandler("tiny", steps=2, guidance=5.0, threads=1)
    model = handler.load_model()
    (a,) = handler.run_inference([GenerationRequest(0, "a cat", (1, 2))], model)
    (b,) = handler.run_inference([GenerationRequest(0, "a cat", (1, 3))], model)
    (c,) = handler.run_inference([GenerationRequest(0, "a cat", (1, 2))], model)
    assert a.inference["images"] == c.inference["images"]
    assert (
        a.inference["images"][0] == b.inference["images"][0]
        and a.inference["images"][1] != b.inference["images"][1]
    )


def test_generate_keeps_empty_captions_as_rejections_and_skips_comment_lines(
    tiny_presets: dict, tmp_path: Path
) -> None:
    # The prompt-file rules are canvas.core.formats.prompts' (tested there); generate's part is that an
    # empty caption is a row it reports, while a `#` line of a .txt is no prompt at all.
    parquet = tmp_path / "curated.parquet"
    pq.write_table(pa.table({"key": ["1", "2"], "caption": ["a cat", None]}), parquet)
    summary = run_generation(parquet, tmp_path / "p", **FAST)
    assert (summary["prompts"], summary["prompts_rejected"]) == (2, 1)
    assert '"reason": "empty prompt"' in (tmp_path / "p/rejected_prompts.jsonl").read_text()
    txt = tmp_path / "p.txt"
    txt.write_text("# made for the demo\na cat\n\n")
    summary = run_generation(txt, tmp_path / "t", **FAST)
    assert (summary["prompts"], summary["prompts_rejected"], summary["pairs"]) == (1, 0, 1)


def test_generate_cli_rejects_bad_flags_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    txt = tmp_path / "p.txt"
    txt.write_text("a cat\n")
    assert (
        main(["generate", "--prompts", str(txt), "--output", str(tmp_path), "--images-per-prompt", "1"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("canvas: error: --images-per-prompt must be at least 2") and err.count("\n") == 1


FAST = {"images_per_prompt": 2, "steps": 2, "seed": 3, "threads": 1}


def test_portable_runner_through_the_job_api_gives_the_same_bytes(tiny_presets: dict, tmp_path: Path) -> None:
    # The path Flink and Spark take (see the curate test of the same name): the runner is the user's,
    # and the workers write the files, so they must equal the DirectRunner's byte for byte.
    prompts = ["a cat", "a dog", ""]
    direct = run_generation(prompts, tmp_path / "direct", **FAST)
    args = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]
    portable = run_generation(prompts, tmp_path / "portable", beam_args=args, **FAST)
    counts = ("prompts", "prompts_kept", "prompts_rejected", "pairs")
    assert [direct[k] for k in counts] == [portable[k] for k in counts] == [3, 2, 1, 2]
    assert portable["metrics"]["prompts_kept"] == 2  # the runner's counters come back too
    for name in ("candidates.parquet", "rejected_prompts.jsonl"):
        assert (tmp_path / "direct" / name).read_bytes() == (tmp_path / "portable" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "portable").iterdir()) == [
        ".canvas-output.json",
        "candidates.parquet",
        "rejected_prompts.jsonl",
    ]


def test_generate_reads_and_writes_an_object_store_path(
    tiny_presets: dict, object_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bucket").mkdir()
    (tmp_path / "bucket/prompts.txt").write_text("# prompts\na cat\n\na dog\nA  cat\n")
    prompts, out = f"{object_store}bucket/prompts.txt", f"{object_store}bucket/cands"
    flags = ["--steps", "2", "--seed", "3", "--threads", "1"]
    assert main(["generate", "--prompts", prompts, "--output", out, *flags]) == 0
    assert (
        f"2 pairs from 2 prompts -> {out}/candidates.parquet (1 prompts rejected" in capsys.readouterr().out
    )
    written = tmp_path / "bucket/cands"
    assert sorted(p.name for p in written.iterdir()) == [
        ".canvas-output.json",
        "candidates.parquet",
        "rejected_prompts.jsonl",
    ]
    rows = pq.read_table(written / "candidates.parquet").to_pylist()
    assert [r["prompt"] for r in rows] == ["a cat", "a dog"]
    assert '"reason": "duplicate of prompt #0"' in (written / "rejected_prompts.jsonl").read_text()
    assert not [p for p in (tmp_path / "bucket").iterdir() if "partial" in p.name]
    parquet = tmp_path / "bucket/captions.parquet"  # a curated Parquet's captions, on the store too
    pq.write_table(pa.table({"caption": ["a cat", None]}), parquet)
    entries = read_prompt_entries(f"{object_store}bucket/captions.parquet")
    assert [e.text for e in entries] == ["a cat", ""]


def test_a_misspelt_beam_option_is_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    txt = tmp_path / "p.txt"
    txt.write_text("a cat\n")
    argv = ["generate", "--prompts", str(txt), "--output", str(tmp_path / "o"), "--steps", "1"]
    assert main([*argv, "--direct_num_worker=2"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "canvas: error: unknown option --direct_num_worker (neither canvas generate's nor a Beam pipeline "
        "option); did you mean --direct_num_workers?\n"
    )
    assert main([*argv, "--runner=NoSuchRunner"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("canvas: error: --runner=NoSuchRunner: ") and err.count("\n") == 1
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*"))


def test_a_misspelt_model_is_one_line_on_a_users_screen(tmp_path: Path) -> None:
    """As a user sees it (a fresh process): no Beam worker traceback for a --pretrained typo, and no Beam
    import warning ("apitools not found") above the error."""
    import subprocess
    import sys

    txt = tmp_path / "p.txt"
    txt.write_text("a cat\n")
    argv = [
        "generate",
        "--prompts",
        str(txt),
        "--output",
        str(tmp_path / "o"),
        "--pretrained",
        "tiny-sd-typo",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "canvas", *argv], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert (
        done.stderr.startswith("canvas: error: --pretrained tiny-sd-typo: ") and done.stderr.count("\n") == 1
    )
    assert not (tmp_path / "o").exists()
