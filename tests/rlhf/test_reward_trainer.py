"""The reward model learns an oracle's preferences, saves/loads in one call, and serves as a reward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from canvas.cli import main
from canvas.core.errors import CanvasError
from canvas.rlhf.rewards import load_reward
from canvas.rlhf.tracking import read_metrics


@pytest.fixture(scope="module")
def trained_reward(oracle_preferences: Path, tmp_path_factory: pytest.TempPathFactory, tiny_presets) -> Path:
    out = tmp_path_factory.mktemp("reward")
    code = main(
        [
            "train", "reward", "--preferences", str(oracle_preferences), "--output_dir", str(out),
            "--num_epochs", "40", "--checkpointing_epochs", "10", "--seed", "0",
            "--early_stopping_patience", "0",  # all 40 epochs: this fixture also checks checkpoint rotation
        ]
    )  # fmt: skip
    assert code == 0
    return out


def test_reward_model_learns_the_oracle(trained_reward: Path) -> None:
    summary = json.loads((trained_reward / "summary.json").read_text())
    assert summary["heldout_accuracy"] >= 0.85, summary
    assert summary["train_ties"] + summary["heldout_ties"] == 20  # ties are kept, as 0.5 targets
    metrics = read_metrics(trained_reward)
    assert len(metrics) == 40
    assert metrics[-1]["heldout/log_loss"] < metrics[0]["heldout/log_loss"] < 0.7
    assert [p.name for p in sorted((trained_reward / "checkpoints").iterdir())] == [
        "checkpoint-20",
        "checkpoint-30",
    ]
    assert any((trained_reward / "tensorboard").iterdir())


def test_saved_model_loads_in_one_call_and_scores_like_the_oracle(trained_reward: Path) -> None:
    from canvas.rlhf.reward_model import CLIPRewardModel

    reward = load_reward(str(trained_reward))  # the folder loader registered by canvas.rlhf.reward_model
    assert isinstance(reward, CLIPRewardModel)
    gen = torch.Generator().manual_seed(3)
    base = torch.rand((8, 3, 48, 48), generator=gen) * 0.6 + 0.2
    darker, brighter = base * 0.6, (base * 1.4).clamp(0, 1)
    prompts = ["a photo of a cat"] * 8
    assert (reward(brighter, prompts) > reward(darker, prompts)).float().mean() >= 0.75
    again = CLIPRewardModel.from_pretrained(trained_reward)
    assert torch.equal(again(base, prompts), reward(base, prompts))


def test_head_on_a_different_clip_is_refused(trained_reward: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    copy = tmp_path / "rm"
    shutil.copytree(trained_reward, copy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    state = load_file(str(copy / "model.safetensors"))
    state["clip_probe"] = state["clip_probe"] + 0.1  # as if trained on other CLIP weights
    save_file(state, str(copy / "model.safetensors"))
    with pytest.raises(CanvasError, match="differs from the one this head was trained on"):
        load_reward(str(copy))


def test_canvas_score_ranks_image_files(trained_reward: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    paths = []
    for name, value in (("dark", 40), ("bright", 210)):
        paths.append(tmp_path / f"{name}.png")
        Image.new("RGB", (64, 64), (value, value - 20, value)).save(paths[-1])
    assert main(["score", "--reward", str(trained_reward), "--images", *map(str, paths), "--json"]) == 0
    scores = [json.loads(line)["score"] for line in capsys.readouterr().out.splitlines()]
    assert scores[1] > scores[0]
    assert main(["score", "--reward", "brightness", "--images", str(paths[0])]) == 0
    assert capsys.readouterr().out.startswith("0.")


def test_resume_repeats_the_uninterrupted_run_bitwise(small_oracle_preferences: Path, tmp_path: Path) -> None:
    """`--resume latest` (the shared skeleton): model, optimizer, RNG and batch order continue exactly."""
    prefs = str(small_oracle_preferences)
    args = ["train", "reward", "--preferences", prefs, "--seed", "1", "--batch_size", "8"]
    args += ["--checkpointing_steps", "2", "--no_tensorboard"]
    assert main([*args, "--output", str(tmp_path / "full"), "--epochs", "5"]) == 0
    # "Interrupted" after epoch 3 (checkpoint-2 and a metrics line beyond it) ...
    assert main([*args, "--output", str(tmp_path / "cut"), "--epochs", "3"]) == 0
    # ... then resumed to epoch 5 from checkpoint-2
    assert main([*args, "--output", str(tmp_path / "cut"), "--epochs", "5", "--resume", "latest"]) == 0
    full, cut = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert cut == full and [m["epoch"] for m in cut] == [1, 2, 3, 4, 5]
    for name in ("model.safetensors", "checkpoints/checkpoint-4/model.safetensors"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "full" / name).read_bytes()
