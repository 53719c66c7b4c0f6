"""Candidate generation through Beam RunInference with the tiny diffusers pipeline."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from canvas.cli import main
from canvas.core.errors import CanvasError
from canvas.pipelines.generate import (
    CANDIDATES_SCHEMA,
    DiffusersPipelineHandler,
    GenerationRequest,
    read_prompts,
    run_generation,
)


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


def test_prompts_from_txt_and_curated_parquet(tmp_path: Path) -> None:
    txt = tmp_path / "p.txt"
    txt.write_text("a cat\n\n  a dog  \n")
    assert read_prompts(txt) == ["a cat", "a dog"]
    parquet = tmp_path / "curated.parquet"
    pq.write_table(pa.table({"key": ["1", "2"], "caption": ["a cat", None]}), parquet)
    assert read_prompts(parquet) == ["a cat", None]  # None is rejected as an empty prompt by the pipeline
    pq.write_table(pa.table({"text": ["a cat"]}), tmp_path / "bad.parquet")
    with pytest.raises(CanvasError, match="no caption or prompt column"):
        read_prompts(tmp_path / "bad.parquet")


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
