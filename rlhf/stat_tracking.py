"""Advantages for DDPO: rewards normalised per prompt (with a rolling buffer) or per batch, or per step
against a value of the state before it (`step_baseline_advantages`); which (sample, step) pairs to
train when only the largest advantages are (`top_advantage_pairs`).

Per-prompt normalisation (Black et al. 2023) compares an image only with earlier images of the same
prompt, so prompts that are easy to score well do not dominate the gradient. Until a prompt has
`min_count` rewards in its buffer, the batch's mean and std stand in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

# Keeps the division finite when every reward in a group is equal.
STD_EPS = 1e-6


def batch_normalized_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(r - mean) / (std + eps) over the whole batch (population std, as numpy's default)."""
    r = rewards.double()
    return ((r - r.mean()) / (r.std(unbiased=False) + STD_EPS)).float()


def step_baseline_advantages(rewards: torch.Tensor, step_values: torch.Tensor) -> torch.Tensor:
    """Per-step advantages `(N, T)`: each sample's reward minus a per-step linear fit of the reward on
    `step_values[:, k]` (a value estimate of the state before step k, e.g. the reward of the sampler's
    predicted clean image there).

    A baseline that depends only on the state before step k leaves step k's policy gradient unbiased
    and removes the part of the reward that earlier steps decided; the least-squares coefficient makes
    it never worse than the batch mean (variance times 1 - corr^2). Every step is divided by the reward's
    std, so each keeps its true weight in the gradient (dividing by each step's own residual std, which
    weighs the late steps up, learned no faster on the JPEG recipe: docs/benchmarks.md).
    """
    r = rewards.double()
    v = step_values.double()
    rc = r - r.mean()
    vc = v - v.mean(dim=0)
    var_v = (vc**2).mean(dim=0)
    beta = torch.where(var_v > 0, (vc * rc[:, None]).mean(dim=0) / var_v.clamp(min=1e-30), 0.0)
    residual = rc[:, None] - beta * vc
    return (residual / (r.std(unbiased=False) + STD_EPS)).float()


def top_advantage_pairs(
    advantages: torch.Tensor, fraction: float, groups: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The (row, column) indices of the entries of `advantages` (N, T) with the largest |advantage|, in
    row-major order: `fraction` of them, rounded down to a multiple of `groups` (at least `groups`, so
    the pairs split evenly into that many optimizer steps); and the share of the squared advantages they
    hold (the rest is what the loss leaves out)."""
    steps = advantages.shape[1]
    adv = advantages.abs().flatten()
    keep = max(groups, int(adv.numel() * fraction) // groups * groups)
    kept = torch.topk(adv, keep, sorted=False).indices.sort().values
    share = (adv[kept].square().sum() / adv.square().sum().clamp(min=1e-30)).item()
    return kept // steps, kept % steps, share


class PerPromptStatTracker:
    """Rolling per-prompt reward buffers; `update` returns the advantages of a batch."""

    def __init__(self, buffer_size: int = 16, min_count: int = 16) -> None:
        if buffer_size < 1 or min_count < 1:
            raise ValueError("buffer_size and min_count must be >= 1")
        if min_count > buffer_size:
            raise ValueError(f"min_count ({min_count}) > buffer_size ({buffer_size}): the buffer never fills")
        self.buffer_size, self.min_count = buffer_size, min_count
        self.buffers: dict[str, deque[float]] = {}

    def update(self, prompts: Sequence[str], rewards: torch.Tensor) -> torch.Tensor:
        """Add the batch's rewards to their prompts' buffers, then normalise each by its prompt's stats."""
        if len(prompts) != len(rewards):
            raise ValueError(f"{len(prompts)} prompts but {len(rewards)} rewards")
        values = rewards.detach().double().cpu().numpy()
        names = np.asarray(list(prompts), dtype=object)
        batch_mean, batch_std = values.mean(), values.std() + STD_EPS
        advantages = np.empty_like(values)
        for prompt in dict.fromkeys(prompts):  # first-seen order: deterministic
            mask = names == prompt
            buffer = self.buffers.setdefault(prompt, deque(maxlen=self.buffer_size))
            buffer.extend(float(v) for v in values[mask])
            if len(buffer) < self.min_count:
                mean, std = batch_mean, batch_std
            else:
                mean, std = float(np.mean(buffer)), float(np.std(buffer)) + STD_EPS
            advantages[mask] = (values[mask] - mean) / std
        return torch.from_numpy(advantages).float()

    def stats(self) -> dict[str, dict[str, float]]:
        """Per prompt: mean, std and count of the buffered rewards."""
        return {
            p: {"mean": float(np.mean(b)), "std": float(np.std(b)), "count": len(b)}
            for p, b in self.buffers.items()
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (floats round-trip exactly through JSON)."""
        return {
            "buffer_size": self.buffer_size,
            "min_count": self.min_count,
            "buffers": {p: list(b) for p, b in self.buffers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffers = {p: deque(v, maxlen=self.buffer_size) for p, v in state["buffers"].items()}
