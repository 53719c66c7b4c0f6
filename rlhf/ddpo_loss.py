"""DDPO's loss: PPO's clipped surrogate on each denoising step's likelihood ratio (Black et al. 2023).

Pure tensors in, tensors out, so it is tested on its own (tests/rlhf/test_ddpo_trainer.py); the formulas
are ddpo-pytorch's `train.py` and trl's removed `DDPOTrainer.loss`. `DDPOTrainer` calls it once per
training call.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class DDPOLossOutput(NamedTuple):
    loss: torch.Tensor
    approx_kl: torch.Tensor
    clipfrac: torch.Tensor


def ddpo_clipped_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
    adv_clip_max: float,
) -> DDPOLossOutput:
    """PPO's clipped surrogate on the per-step likelihood ratio (pessimistic of clipped and unclipped).

    Also returns approx_kl = 0.5 * E[(log p - log p_old)^2] and the fraction of clipped ratios.
    """
    advantages = advantages.clamp(-adv_clip_max, adv_clip_max)
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()
    approx_kl = 0.5 * ((log_prob - old_log_prob) ** 2).mean()
    clipfrac = ((ratio - 1.0).abs() > clip_range).float().mean()
    return DDPOLossOutput(loss, approx_kl.detach(), clipfrac.detach())
