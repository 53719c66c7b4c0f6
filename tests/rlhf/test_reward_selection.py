"""The reward model saved is the epoch with the best held-out log-loss, not the last (over-fit) one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from canvas.cli import main
from canvas.rlhf.tracking import read_metrics


def _train(prefs: Path, out: Path, *extra: str) -> dict:
    args = ["train", "reward", "--preferences", str(prefs), "--output_dir", str(out), "--seed", "0"]
    assert main([*args, "--no_tensorboard", "--checkpointing_steps", "0", *extra]) == 0
    return json.loads((out / "summary.json").read_text())


def _heldout_log_loss(model_dir: Path, prefs: Path, seed: int = 0) -> float:
    """The saved model's log-loss on the trainer's held-out split, recomputed from the files alone."""
    from canvas.rlhf.diffusion_model import image_to_tensor
    from canvas.rlhf.preferences import decode_pair, load_preferences
    from canvas.rlhf.reward_model import CLIPRewardModel
    from canvas.rlhf.reward_trainer import bradley_terry_loss

    model = CLIPRewardModel.from_pretrained(model_dir)
    size = model.clip.visual.preprocess_cfg["size"]
    size = size if isinstance(size, int) else size[0]
    _, heldout = load_preferences(prefs).split(0.2, seed)
    pairs = [heldout[i] for i in range(len(heldout))]
    images = [decode_pair(heldout, p) for p in pairs]
    captions = [p.caption for p in pairs]
    s_w = model(torch.stack([image_to_tensor(w, size) for w, _ in images]), captions)
    s_l = model(torch.stack([image_to_tensor(lo, size) for _, lo in images]), captions)
    return float(bradley_terry_loss(s_w, s_l, torch.tensor([p.target for p in pairs])).mean())


def test_saved_weights_are_the_best_heldout_epoch_not_the_last(
    noisy_photo_preferences: Path, tmp_path: Path, tiny_presets
) -> None:
    """200 noisy pairs, 25 epochs, no early stop: held-out log-loss bottoms out early and then rises
    (measured: 0.51 at epoch 1, 1.0 by epoch 30, 2.06 at epoch 100) while the training loss falls. The saved
    model must be the best epoch's, and summary.json must say which epoch that was."""
    out = tmp_path / "rm"
    summary = _train(noisy_photo_preferences, out, "--num_epochs", "25", "--early_stopping_patience", "0")
    metrics = read_metrics(out)
    best = min(metrics, key=lambda m: m["heldout/log_loss"])
    assert metrics[-1]["heldout/log_loss"] > best["heldout/log_loss"] + 0.1  # the setup does over-fit
    saved = _heldout_log_loss(out, noisy_photo_preferences)
    assert saved == pytest.approx(best["heldout/log_loss"], abs=1e-4), (saved, best, metrics[-1])
    assert summary["selected_epoch"] == best["epoch"] < summary["last_epoch"] == 25
    assert summary["selected_step"] == best["step"]
    assert summary["heldout_log_loss"] == pytest.approx(best["heldout/log_loss"], abs=1e-6)
    assert summary["heldout_accuracy"] == pytest.approx(best["heldout/accuracy"], abs=1e-6)
    assert summary["last_heldout_log_loss"] == pytest.approx(metrics[-1]["heldout/log_loss"], abs=1e-6)
    assert summary["last_heldout_accuracy"] == pytest.approx(metrics[-1]["heldout/accuracy"], abs=1e-6)
    assert summary["stopped_early"] is False and len(metrics) == 25


def test_early_stopping_stops_patience_epochs_after_the_best(
    noisy_photo_preferences: Path, tmp_path: Path, tiny_presets
) -> None:
    out = tmp_path / "rm"
    summary = _train(noisy_photo_preferences, out, "--num_epochs", "60", "--early_stopping_patience", "4")
    metrics = read_metrics(out)
    assert summary["stopped_early"] is True
    assert summary["last_epoch"] == summary["selected_epoch"] + 4 == len(metrics) < 60
    assert [m["epoch"] for m in metrics if m["heldout/is_best"]][-1] == summary["selected_epoch"]
    assert _heldout_log_loss(out, noisy_photo_preferences) == pytest.approx(
        summary["heldout_log_loss"], abs=1e-4
    )
