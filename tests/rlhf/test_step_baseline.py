"""DDPO's per-step baseline (advantage_baseline: predicted_x0): what it removes and what it keeps."""

from __future__ import annotations

import torch

from canvas.rlhf.stat_tracking import batch_normalized_advantages, step_baseline_advantages


def test_a_value_that_knows_the_earlier_steps_leaves_only_what_the_step_itself_decides() -> None:
    # reward = a + b: a is decided before step 1, b by step 1. The value before step 1 sees a.
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4096, generator=gen), 0.1 * torch.randn(4096, generator=gen)
    reward = a + b
    values = torch.stack([torch.zeros_like(a), a], dim=1)  # before step 0: nothing known; before step 1: a
    adv = step_baseline_advantages(reward, values)
    # step 0 keeps the batch-normalised reward; step 1's advantage is b alone, on the reward's scale
    torch.testing.assert_close(adv[:, 0], batch_normalized_advantages(reward), atol=1e-5, rtol=0)
    expected = (b - b.mean()) / reward.std(unbiased=False)
    # (up to the sample covariance of a and b, which the least-squares fit absorbs)
    torch.testing.assert_close(adv[:, 1], expected.float(), atol=0.02, rtol=0)
    assert adv[:, 1].std() < 0.11  # the batch-normalised reward's std is 1


def test_a_useless_value_is_never_worse_than_the_batch_mean() -> None:
    gen = torch.Generator().manual_seed(1)
    reward = torch.randn(512, generator=gen)
    noise = 5 * torch.randn(512, 3, generator=gen)  # unrelated to the reward, larger than it
    adv = step_baseline_advantages(reward, noise)
    plain = batch_normalized_advantages(reward)
    # the fitted coefficient is ~0, so the advantages stay close to the plain ones (not reward - noise)
    assert (adv - plain[:, None]).abs().mean() < 0.1
    assert adv.var(dim=0).max() <= plain.var() + 1e-6
