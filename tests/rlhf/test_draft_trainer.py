"""DRaFT on the tiny preset (CPU): gradients flow only through the last K steps into the LoRA only,
DRaFT-LV's re-noised copies, the differentiable rewards, and bad rewards refused before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from canvas.core.errors import CanvasError
from canvas.rlhf.draft_config import DraftConfig
from canvas.rlhf.draft_rewards import DifferentiableBrightness, load_differentiable_reward
from canvas.rlhf.draft_trainer import DraftTrainer

PROMPTS = ["a red ball", "a cat on a mat"]


def small_config(output: Path, **overrides) -> DraftConfig:
    settings = dict(
        output_dir=str(output), seed=1, sample_num_steps=4, guidance_scale=3.0, max_steps=1,
        train_batch_size=2, learning_rate=1e-2, checkpointing_steps=1, eval_num_samples=0, tensorboard=False,
    )  # fmt: skip
    return DraftConfig(**{**settings, **overrides})


def _grads(trainer: DraftTrainer, k_flags: list) -> dict[str, torch.Tensor]:
    """Backpropagate the reward of one batch; returns the LoRA gradients, recording each step's grad flag."""
    gen = torch.Generator().manual_seed(0)
    trainer.unet.train()
    images, prompts = trainer.generate(PROMPTS, gen, grad=True, on_step=lambda i, t, g: k_flags.append(g))
    (-trainer.reward(images, prompts).mean()).backward()
    return {n: p.grad.clone() for n, p in trainer.unet.named_parameters() if p.requires_grad}


def test_reward_gradient_reaches_the_lora_only_through_the_last_k_steps(tmp_path: Path, tiny_presets) -> None:
    flags_k1: list[bool] = []
    trainer = DraftTrainer(small_config(tmp_path / "k1", draft_k=1), prompts=PROMPTS)
    k1 = _grads(trainer, flags_k1)
    # Only the last step ran with a graph; only LoRA weights are trainable, and all of them got a gradient.
    assert flags_k1 == [False, False, False, True]
    assert k1 and all("lora" in name for name in k1)
    # LoRA B starts at zero, so at step 0 the gradient reaches every B (A's gradient is B^T times it: zero).
    assert all(g.abs().sum() > 0 for n, g in k1.items() if "lora_B" in n)
    frozen = [p for p in trainer.unet.parameters() if not p.requires_grad]
    frozen += list(trainer.pipe.vae.parameters()) + list(trainer.pipe.text_encoder.parameters())
    assert all(p.grad is None for p in frozen)

    flags_k3: list[bool] = []
    trainer3 = DraftTrainer(small_config(tmp_path / "k3", draft_k=3), prompts=PROMPTS)
    k3 = _grads(trainer3, flags_k3)
    assert flags_k3 == [False, True, True, True]
    # Same LoRA init, same noise, same images: the extra steps' chain rule changes the gradient.
    assert k3.keys() == k1.keys() and any(not torch.allclose(k3[n], k1[n]) for n in k1)

    flags_lv: list[bool] = []
    lv = DraftTrainer(small_config(tmp_path / "lv", lv_draws=2), prompts=PROMPTS)
    gen = torch.Generator().manual_seed(0)
    images, prompts = lv.generate(PROMPTS, gen, grad=True, on_step=lambda i, t, g: flags_lv.append(g))
    # DRaFT-LV: the whole chain without a graph, then 2 re-noised copies of each image denoised with one.
    assert flags_lv == [False] * 4 + [True] and images.shape[0] == 4 and prompts == PROMPTS * 2
    assert images.requires_grad


def test_training_step_changes_only_the_lora_and_raises_nothing_else(tmp_path: Path, tiny_presets) -> None:
    trainer = DraftTrainer(small_config(tmp_path), prompts=PROMPTS)
    lora_before = {n: p.detach().clone() for n, p in trainer.unet.named_parameters() if p.requires_grad}
    frozen_before = {n: p.detach().clone() for n, p in trainer.unet.named_parameters() if not p.requires_grad}
    metrics = trainer.train_step(0)
    assert metrics["reward_queries"] == 2 and metrics["grad_norm"] > 0
    after = dict(trainer.unet.named_parameters())
    assert all(not torch.equal(after[n], v) for n, v in lora_before.items() if "lora_B" in n)
    assert all(torch.equal(after[n], v) for n, v in frozen_before.items())


def test_differentiable_rewards_keep_the_graph_and_match_the_scorers() -> None:
    from canvas.rlhf.rewards import load_reward

    images = torch.rand(3, 3, 32, 32, requires_grad=True)
    brightness = DifferentiableBrightness()(images, ["a"] * 3)
    assert torch.allclose(brightness.detach(), load_reward("brightness")(images, ["a"] * 3))
    brightness.sum().backward()
    assert torch.allclose(images.grad, torch.full_like(images, 1 / (3 * 32 * 32)))


def test_reward_model_is_scored_with_gradients_equal_to_its_scores(tmp_path: Path, tiny_presets) -> None:
    from canvas.rlhf.reward_model import CLIPRewardModel

    model = CLIPRewardModel(hidden_dim=8)
    model.save_pretrained(tmp_path / "rm")
    reward = load_differentiable_reward(str(tmp_path / "rm"))
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    scores = reward(images, ["a cat", "the moon"])
    assert torch.allclose(scores.detach(), model(images.detach(), ["a cat", "the moon"]), atol=1e-5)
    scores.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["jpeg", "jpeg_compressibility", "jpeg_incompressibility"])
def test_jpeg_is_refused_as_not_differentiable(name: str) -> None:
    with pytest.raises(CanvasError, match=r"not differentiable .*canvas train ddpo"):
        load_differentiable_reward(name)


def test_a_reward_without_a_gradient_stops_the_step(tmp_path: Path, tiny_presets) -> None:
    from canvas.rlhf.rewards import BrightnessReward  # the scorer detaches

    trainer = DraftTrainer(small_config(tmp_path), reward=BrightnessReward(), prompts=PROMPTS)
    with pytest.raises(CanvasError, match="returned no gradient: DRaFT needs a differentiable reward"):
        trainer.train_step(0)


def test_a_resumed_run_goes_on_at_the_loss_scale_it_had(
    tmp_path: Path, tiny_presets, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp16 DRaFT scales its loss with a GradScaler; a resume restarted the scale from the default. fp16
    needs CUDA, so here an enabled CPU scaler that doubles every step stands in for it (same class)."""
    import canvas.rlhf.draft_trainer as draft_trainer

    real = torch.amp.GradScaler
    monkeypatch.setattr(
        draft_trainer.torch.amp,
        "GradScaler",
        lambda device, enabled: real("cpu", enabled=True, init_scale=1024.0, growth_interval=1),
    )
    first = DraftTrainer(small_config(tmp_path, max_steps=1), prompts=PROMPTS)
    first.train()
    assert first.scaler.get_scale() == 2048.0
    resumed = DraftTrainer(
        small_config(tmp_path, max_steps=2, resume_from_checkpoint="latest"), prompts=PROMPTS
    )
    assert resumed.start_step == 1 and resumed.scaler.get_scale() == 2048.0
    resumed.train()
    assert resumed.scaler.get_scale() == 4096.0
