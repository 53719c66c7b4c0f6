"""`canvas train ddpo`: dataclass flags + --config YAML, Parquet prompts, --resume latest, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canvas.cli import main
from canvas.rlhf.tracking import read_metrics

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
    saved = json.loads((out / "run_config.json").read_text())
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


@pytest.mark.slow
def test_train_ddpo_in_two_cpu_processes_under_torchrun(
    tmp_path: Path, tiny_presets, canvas_in_two_processes
) -> None:
    # The multi-GPU path, on CPU: two processes must join (gloo), sample their own halves, train one
    # model and write one set of files. Without the join each process trained alone, both wrote the
    # same folder, and a run could fail on the other's half-written files.
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\nthe moon\n")
    config = tmp_path / "ddpo.yaml"
    config.write_text(SMALL.replace("eval_num_samples: 2", "eval_num_samples: 0"))
    out = tmp_path / "run"
    done = canvas_in_two_processes(
        ["train", "ddpo", "--prompts", str(prompts), "--reward", "jpeg_compressibility", "--output", str(out),
         "--config", str(config), "--epochs", "2", "--pretrained", "tiny"]
    )  # fmt: skip
    assert done.stdout.count("reward_mean_first_epoch") == 1  # only the main process reports
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_processes"] == 2
    assert [row["epoch"] for row in read_metrics(out)] == [1, 2]
    assert (out / "pytorch_lora_weights.safetensors").exists()


def test_processes_that_did_not_join_are_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from accelerate.state import AcceleratorState

    from canvas.core.errors import CanvasError
    from canvas.rlhf import launch

    monkeypatch.setattr(launch, "launched_processes", lambda: 2)  # a launcher said 2, accelerate saw 1
    try:
        with pytest.raises(CanvasError, match="2 processes were launched but accelerate joined 1"):
            launch.create_accelerator()
    finally:  # the attempt set accelerate's process-wide state to CPU mode; later tests start clean
        AcceleratorState._reset_state(reset_partial_state=True)


def test_shipped_recipes_set_exactly_what_they_say(tmp_path: Path) -> None:
    """Every rlhf/recipes/*.yaml parses as `canvas train ddpo --config` does, each value landing in its
    DDPOConfig field (a misspelt key or a value of the wrong type would fail here, not in a user's run)."""
    import yaml

    from canvas.core.config_parser import parse_config_command
    from canvas.rlhf.ddpo_config import RECIPES_DIR, DDPOConfig

    recipes = sorted(RECIPES_DIR.glob("ddpo_*.yaml"))
    assert recipes, f"no DDPO recipe in {RECIPES_DIR}"
    for recipe in recipes:
        argv = ["--config", str(recipe), "--prompts", "prompts.txt", "--output", str(tmp_path)]
        config = parse_config_command(DDPOConfig, argv, "canvas train ddpo", "")
        for key, value in yaml.safe_load(recipe.read_text()).items():
            assert getattr(config, key) == value, (recipe.name, key)
