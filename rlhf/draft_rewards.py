"""Differentiable rewards for DRaFT: `reward(images, prompts) -> Tensor[B]` that keeps the autograd graph.

The rewards of `canvas.rlhf.rewards` are scorers: they detach (brightness), run under `no_grad` (the reward
model) or leave torch altogether (JPEG through PIL). DRaFT needs the gradient of the reward in the pixels,
so this module gives the differentiable form of those that have one and a clear error for those that do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from canvas.core.errors import CanvasError
from canvas.rlhf.rewards import REWARDS, Reward

# Rewards computed outside torch (PIL encoders): no gradient exists to backpropagate.
NOT_DIFFERENTIABLE = ("jpeg", "jpeg_compressibility", "jpeg_incompressibility")


class DifferentiableBrightness:
    """Mean pixel value in [0, 1], with its gradient."""

    name = "brightness"

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        return images.float().mean(dim=(1, 2, 3))


class DifferentiableRewardModel:
    """A `CLIPRewardModel` scored with gradients: resize and normalise in torch, CLIP image tower, head.

    The text features do not depend on the image and stay under `no_grad`; CLIP and the head are frozen
    (only the image receives a gradient).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.name = getattr(model, "name", "reward_model")

    def to(self, device: Any) -> DifferentiableRewardModel:
        """Move the head and its CLIP (kept outside the module tree) to the trainer's device."""
        self.model.clip.to(device)
        self.model.to(device)
        return self

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        model = self.model
        device = model.feature_mean.device
        # the reward model's own torch preprocessing (bicubic resize + mean/std), not PIL: it keeps the graph
        pixels = model._preprocess(images.to(device))
        image_features = F.normalize(model.clip.encode_image(pixels).float(), dim=-1)
        with (
            torch.no_grad()
        ):  # tokens onto the model's device (the scorer's `text_features` keeps them on CPU)
            tokens = model.tokenizer(list(prompts)).to(device)
            text_features = F.normalize(model.clip.encode_text(tokens).float(), dim=-1)
        return model.score_features(image_features, text_features).to(images.device)


def load_differentiable_reward(name_or_dir: str) -> Reward:
    """`brightness` or a reward-model folder, as differentiable rewards; a one-line error for anything else."""
    if name_or_dir == "brightness":
        return DifferentiableBrightness()
    if name_or_dir in NOT_DIFFERENTIABLE:
        raise CanvasError(
            f"reward {name_or_dir!r} is not differentiable (JPEG size is computed by a PIL encoder, no "
            "gradient flows through it): DRaFT backpropagates the reward; train it with `canvas train ddpo`"
        )
    if name_or_dir in REWARDS:
        raise CanvasError(
            f"reward {name_or_dir!r} has no differentiable form: DRaFT takes brightness or a reward-model "
            "folder; train other rewards with `canvas train ddpo`"
        )
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        from canvas.rlhf.reward_model import load_if_reward_model  # lazy: it pulls in CLIP

        model = load_if_reward_model(path)
        if model is None:
            raise CanvasError(f"{path} is not a reward-model folder (from `canvas train reward`)")
        model.requires_grad_(False)
        return DifferentiableRewardModel(model)
    raise CanvasError(
        f"unknown reward {name_or_dir!r}: DRaFT takes brightness or a reward-model folder from `canvas train reward`"
    )
