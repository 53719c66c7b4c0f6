"""The demo report's reward-model section names the kept epoch and shows calibration and the reliability plot."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from canvas.loop import report_sections
from canvas.rlhf.reward_calibration import calibration, plot_reliability


def test_reward_section_shows_selection_calibration_and_reliability_diagram(tmp_path: Path) -> None:
    folder = tmp_path / "reward"
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(200, generator=gen) * 2
    outcomes = (torch.rand(200, generator=gen) < torch.sigmoid(logits)).float()
    calib = calibration(logits, outcomes)
    plot_reliability(calib["bins"], folder / "reliability.png")
    summary = {
        "train_pairs": 800, "heldout_pairs": 200, "heldout_accuracy": 0.8, "heldout_log_loss": calib["log_loss"],
        "heldout_brier": calib["brier"], "heldout_ece": calib["ece"], "ece_bins": 10, "reliability": calib["bins"],
        "selected_epoch": 7, "last_epoch": 17, "last_heldout_accuracy": 0.75, "last_heldout_log_loss": 0.9,
        "stopped_early": True,
    }  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    heading, body = report_sections.reward_model(tmp_path)
    assert heading == "Reward model"
    assert "epoch <b>7</b>" in body and "early stopping ended training at epoch 17" in body
    assert f"expected calibration error {calib['ece']:.3f} (10 bins)" in body
    assert "reliability diagram" in body and body.count("data:image/png;base64,") == 1
