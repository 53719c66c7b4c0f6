"""Per-prompt advantages: batch stats until a prompt has min_count rewards, then its own rolling buffer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from canvas.rlhf.stat_tracking import PerPromptStatTracker, batch_normalized_advantages, top_advantage_pairs


def test_batch_normalisation() -> None:
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0])
    adv = batch_normalized_advantages(rewards)
    expected = (rewards.numpy() - 3.0) / (np.std(rewards.numpy()) + 1e-6)
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-6)
    assert batch_normalized_advantages(torch.ones(3)).abs().max() == 0  # equal rewards: no signal, no NaN


def test_batch_stats_until_min_count_then_per_prompt() -> None:
    tracker = PerPromptStatTracker(buffer_size=4, min_count=3)
    prompts = ["cat", "cat", "dog", "dog"]
    # Cats score high and dogs low: with batch stats cats get positive advantages ...
    first = tracker.update(prompts, torch.tensor([10.0, 12.0, 0.0, 2.0]))
    assert (first[:2] > 0).all() and (first[2:] < 0).all()
    # ... once each prompt has >= 3 rewards, each is compared with its own history only.
    second = tracker.update(prompts, torch.tensor([11.0, 13.0, 1.0, 3.0]))
    cat_buffer = np.array([10.0, 12.0, 11.0, 13.0])
    np.testing.assert_allclose(
        second[:2].numpy(),
        (np.array([11.0, 13.0]) - cat_buffer.mean()) / (cat_buffer.std() + 1e-6),
        rtol=1e-6,
    )
    assert second[2] < 0 < second[3]
    # The buffer rolls: only the newest 4 rewards per prompt are kept.
    tracker.update(["cat"], torch.tensor([100.0]))
    assert list(tracker.buffers["cat"]) == [12.0, 11.0, 13.0, 100.0]
    assert tracker.stats()["dog"]["count"] == 4


def test_state_round_trips_through_json() -> None:
    tracker = PerPromptStatTracker(buffer_size=3, min_count=2)
    tracker.update(["a", "b", "a"], torch.tensor([0.1, 0.2, 0.30000001]))
    clone = PerPromptStatTracker(buffer_size=3, min_count=2)
    clone.load_state_dict(json.loads(json.dumps(tracker.state_dict())))
    batch = torch.tensor([0.5, -0.25, 0.125])
    assert torch.equal(clone.update(["a", "b", "b"], batch), tracker.update(["a", "b", "b"], batch))


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="never fills"):
        PerPromptStatTracker(buffer_size=4, min_count=8)
    with pytest.raises(ValueError, match="prompts but"):
        PerPromptStatTracker(4, 2).update(["a"], torch.zeros(2))


def test_top_advantage_pairs_keep_the_largest_magnitudes_in_row_major_order() -> None:
    adv = torch.tensor([[0.1, -3.0, 0.2], [2.0, -0.3, 0.05], [-1.0, 0.4, 0.0], [0.5, 0.01, -0.6]])
    rows, cols, share = top_advantage_pairs(adv, 0.5, groups=2)
    # 6 of 12 pairs: |adv| 3.0, 2.0, 1.0, 0.6, 0.5, 0.4, listed by row, then column
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [
        (0, 1),
        (1, 0),
        (2, 0),
        (2, 1),
        (3, 0),
        (3, 2),
    ]
    kept = torch.tensor([3.0, 2.0, 1.0, 0.4, 0.5, 0.6])
    assert share == pytest.approx((kept**2).sum().item() / (adv**2).sum().item())
    # rounded down to a multiple of the optimizer steps they are split into, never below one per step
    assert len(top_advantage_pairs(adv, 0.5, groups=4)[0]) == 4
    assert len(top_advantage_pairs(adv, 0.01, groups=3)[0]) == 3
