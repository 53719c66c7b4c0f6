"""ECE, Brier score and the reliability bins on pairs whose figures can be worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from canvas.rlhf.reward_calibration import calibration


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_calibration_figures_by_hand() -> None:
    # 10 pairs predicted 0.8 of which 8 went left (calibrated), 5 predicted 0.25 that all went left (off by 0.75),
    # one tie predicted 0.5 (observed 0.5: calibrated).
    logits = torch.tensor([_logit(0.8)] * 10 + [_logit(0.25)] * 5 + [0.0])
    outcomes = torch.tensor([1.0] * 8 + [0.0] * 2 + [1.0] * 5 + [0.5])
    c = calibration(logits, outcomes)
    assert c["ece"] == pytest.approx(5 / 16 * 0.75)
    brier = (8 * 0.2**2 + 2 * 0.8**2 + 5 * 0.75**2 + 0) / 16
    assert c["brier"] == pytest.approx(brier)
    assert [b["count"] for b in c["bins"]] == [0, 0, 5, 0, 0, 1, 0, 0, 10, 0]
    assert c["bins"][8]["mean_predicted"] == pytest.approx(0.8) and c["bins"][8]["observed"] == pytest.approx(
        0.8
    )
    assert c["bins"][0]["mean_predicted"] is None  # an empty bin has no mean


def test_certain_predictions_fall_in_the_end_bins() -> None:
    c = calibration(torch.tensor([40.0, -40.0]), torch.tensor([1.0, 0.0]))
    assert c["bins"][9]["count"] == 1 and c["bins"][0]["count"] == 1
    assert c["ece"] == pytest.approx(0.0, abs=1e-9) and c["log_loss"] == pytest.approx(0.0, abs=1e-9)
