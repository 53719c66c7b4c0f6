"""Every trainer speaks one vocabulary of run knobs (transformers' / diffusers' names), and the old names
still work as flags and YAML keys, each with a one-line deprecation warning."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from canvas.core.config_parser import parse_config_command
from canvas.core.errors import CanvasError
from canvas.rlhf.ddpo_config import DDPOConfig
from canvas.rlhf.dpo_config import DiffusionDPOConfig
from canvas.rlhf.draft_config import DraftConfig
from canvas.rlhf.reward_config import RewardConfig
from canvas.rlhf.sft_config import SFTConfig

CONFIGS = [DiffusionDPOConfig, SFTConfig, DDPOConfig, DraftConfig, RewardConfig]
SHARED = (
    "output_dir",
    "seed",
    "learning_rate",
    "checkpointing_steps",
    "checkpoints_total_limit",
    "resume_from_checkpoint",
    "overwrite_output_dir",
    "tensorboard",
)
# (config, old name, new name, value as typed, value parsed)
RENAMED = [
    (DDPOConfig, "save_freq", "checkpointing_steps", "7", 7),
    (DDPOConfig, "num_checkpoint_limit", "checkpoints_total_limit", "2", 2),
    (DDPOConfig, "resume_from", "resume_from_checkpoint", "latest", "latest"),
    (DDPOConfig, "train_learning_rate", "learning_rate", "0.003", 0.003),
    (RewardConfig, "checkpointing_epochs", "checkpointing_steps", "10", 10),
    (DiffusionDPOConfig, "resume", "resume_from_checkpoint", "latest", "latest"),
    (SFTConfig, "resume", "resume_from_checkpoint", "latest", "latest"),
]
IDS = [f"{c.__name__}.{old}" for c, old, *_ in RENAMED]


@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_trainer_config_has_the_shared_knobs(config_cls: type) -> None:
    names = {f.name for f in dataclasses.fields(config_cls)}
    assert set(SHARED) <= names, sorted(set(SHARED) - names)
    assert not names & {"save_freq", "num_checkpoint_limit", "resume_from", "resume", "checkpointing_epochs"}


@pytest.mark.parametrize(("config_cls", "old", "new", "text", "value"), RENAMED, ids=IDS)
def test_old_flag_still_parses_with_a_deprecation_warning(
    config_cls: type, old: str, new: str, text: str, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        config = parse_config_command(config_cls, [f"--{old}", text], "canvas train", "")
    assert getattr(config, new) == value
    if f"--{old}" != "--resume":  # `--resume` stays a short form, as `--output` and `--epochs`
        assert f"--{old} is deprecated: use --{new} instead" in caplog.text


@pytest.mark.parametrize(("config_cls", "old", "new", "text", "value"), RENAMED, ids=IDS)
def test_old_yaml_key_still_loads_with_a_deprecation_warning(
    config_cls: type,
    old: str,
    new: str,
    text: str,
    value: object,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"{old}: {text}\n")
    with caplog.at_level(logging.WARNING):
        config = parse_config_command(config_cls, ["--config", str(path)], "canvas train", "")
    assert getattr(config, new) == value
    assert f"key '{old}' is deprecated: use '{new}' instead" in caplog.text
    path.write_text(f"{old}: {text}\n{new}: {text}\n")
    with pytest.raises(CanvasError, match=f"both '{old}' and '{new}' are set"):
        parse_config_command(config_cls, ["--config", str(path)], "canvas train", "")


def test_readme_short_flags_work_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        config = parse_config_command(
            DDPOConfig, ["--resume", "latest", "--epochs", "3", "--output", "o"], "canvas train ddpo", ""
        )
    assert (config.resume_from_checkpoint, config.num_epochs, config.output_dir) == ("latest", 3, "o")
    assert "deprecated" not in caplog.text


def test_the_shipped_recipe_uses_the_shared_names(caplog: pytest.LogCaptureFixture) -> None:
    from canvas.rlhf.ddpo_config import RECIPES_DIR

    with caplog.at_level(logging.WARNING):
        for recipe in sorted(RECIPES_DIR.glob("*.yaml")):
            parse_config_command(DDPOConfig, ["--config", str(recipe)], "canvas train ddpo", "")
    assert "deprecated" not in caplog.text


def test_resume_compares_a_checkpoint_saved_under_the_old_names(tmp_path: Path) -> None:
    """A DDPO checkpoint from before the rename (run_config.json says train_learning_rate) is still checked."""
    from canvas.rlhf.checkpointing import RUN_CONFIG_FILE, check_same_config, config_record

    saved = config_record(DDPOConfig(learning_rate=0.5))
    saved["train_learning_rate"] = saved.pop("learning_rate")
    saved["save_freq"] = saved.pop("checkpointing_steps")
    (tmp_path / RUN_CONFIG_FILE).write_text(json.dumps(saved))
    with pytest.raises(CanvasError, match=r"learning_rate: 0.5 -> 0.0003"):
        check_same_config(tmp_path, DDPOConfig())
    check_same_config(tmp_path, DDPOConfig(learning_rate=0.5, checkpointing_steps=3))  # cadence may change


def test_unguided_training_of_a_guided_sampler_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """train_cfg false with guidance > 1 trains the unguided policy on ratios against the guided sampler's
    log-probs (allowed, as in ddpo-pytorch, but rarely meant): one warning; none for the usual settings."""
    with caplog.at_level(logging.WARNING, logger="canvas.rlhf.ddpo_config"):
        DDPOConfig(output_dir="o")
        DDPOConfig(output_dir="o", train_cfg=False, sample_guidance_scale=1.0)
        assert "train_cfg" not in caplog.text
        DDPOConfig(output_dir="o", train_cfg=False)
    assert "train_cfg is false with sample_guidance_scale 5.0" in caplog.text
