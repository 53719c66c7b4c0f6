"""Built-in rewards order images the way their names promise; bad rewards fail loudly."""

from __future__ import annotations

import pytest
import torch

from canvas.core.errors import CanvasError
from canvas.rlhf.rewards import load_reward, register_reward, score_checked


def _flat_and_noisy() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    flat = torch.full((1, 3, 32, 32), 0.5)
    noisy = torch.rand((1, 3, 32, 32), generator=gen)
    return torch.cat([flat, noisy])


def test_brightness_orders_by_mean_pixel() -> None:
    images = torch.stack([torch.full((3, 8, 8), v) for v in (0.1, 0.9, 0.5)])
    scores = load_reward("brightness")(images, ["p"] * 3)
    assert scores.argsort().tolist() == [0, 2, 1]


def test_jpeg_compressibility_prefers_flat_images() -> None:
    images = _flat_and_noisy()
    comp = score_checked(load_reward("jpeg_compressibility"), images, ["p", "p"])
    incomp = score_checked(load_reward("jpeg_incompressibility"), images, ["p", "p"])
    assert comp[0] > comp[1] and incomp[1] > incomp[0]
    assert torch.allclose(comp, -incomp)


def test_unknown_reward_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(CanvasError, match="unknown reward 'shiny'"):
        load_reward("shiny")
    with pytest.raises(CanvasError, match="not a reward-model folder"):
        load_reward(str(tmp_path))


def test_bad_reward_output_is_caught() -> None:
    images = _flat_and_noisy()

    class NaNReward:
        name = "nan"

        def __call__(self, images, prompts):
            return torch.tensor([1.0, float("nan")])

    class WrongShape:
        name = "wrong"

        def __call__(self, images, prompts):
            return torch.zeros(3)

    register_reward("nan_for_test", NaNReward)
    with pytest.raises(CanvasError, match=r"non-finite values at batch positions \[1\]"):
        score_checked(load_reward("nan_for_test"), images, ["a", "b"])
    with pytest.raises(CanvasError, match=r"shape \(3,\), expected \(2,\)"):
        score_checked(WrongShape(), images, ["a", "b"])
