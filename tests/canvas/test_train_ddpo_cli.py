"""`canvas train ddpo`: dataclass flags + --config YAML, Parquet prompts, --resume latest, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canvas.cli import main
from rlhf.tracking import read_metrics

SMALL = """\
mixed_precision: "no"
sample_num_steps: 3
sample_batch_size: 2
sample_num_batches_per_epoch: 1
train_batch_size: 2
sample_grid_freq: 1
eval_num_samples: 2
"""


@pytest.mark.slow
def test_train_ddpo_from_parquet_captions_then_resume(
    tmp_path: Path, tiny_presets, sample_parquet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ddpo.yaml"
    config.write_text(SMALL)
    out = tmp_path / "run"
    args = ["train", "ddpo", "--prompts", str(sample_parquet), "--reward", "jpeg_compressibility"]
    args += ["--output", str(out), "--config", str(config)]
    assert main([*args, "--epochs", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"reward_mean_first_epoch", "eval_reward_base", "eval_reward_tuned", "lora"} <= printed.keys()
    assert (out / "pytorch_lora_weights.safetensors").exists() and (out / "samples/epoch-0001.png").exists()
    saved = json.loads((out / "ddpo_config.json").read_text())
    assert saved["sample_num_steps"] == 3 and saved["num_epochs"] == 1  # YAML and flags both applied

    assert main([*args, "--epochs", "2", "--resume", "latest"]) == 0
    assert [m["epoch"] for m in read_metrics(out)] == [1, 2]
    assert (out / "checkpoints/checkpoint-2").is_dir()


def test_train_ddpo_user_mistakes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red ball\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    cases = [
        (["--prompts", str(prompts), "--reward", "sparkle"], "unknown reward 'sparkle'"),
        (["--prompts", str(empty)], "no prompts in"),
        (["--prompts", str(tmp_path / "missing.txt")], "prompt file not found"),
        (["--reward", "brightness"], "--prompts FILE is required"),
        (["--prompts", str(prompts), "--config", str(tmp_path / "nope.yaml")], "config file not found"),
        (["--prompts", str(prompts), "--sample_eta", "0"], "sample_eta must be > 0"),
    ]
    for extra, message in cases:
        code = main(["train", "ddpo", "--output", str(tmp_path / "out"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("canvas: error:") and message in err, (extra, err)
        assert err.count("\n") == 1
