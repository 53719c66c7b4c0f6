"""LoRA saves in the diffusers format; checkpoints restore LoRA, optimizer and RNG exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from canvas.core.presets.loading import load_pipeline
from canvas.rlhf.checkpointing import list_checkpoints, load_checkpoint, resolve_resume, save_checkpoint
from canvas.rlhf.lora import adapters_disabled, add_unet_lora, lora_merged, save_unet_lora


def _sample(pipe) -> np.ndarray:
    return pipe(
        "a red ball", num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images


def _perturbed_lora_pipe(targets: list[str] | None = None, alpha: float | None = None):
    pipe = load_pipeline("tiny")
    params = add_unet_lora(pipe.unet, rank=4, alpha=alpha, **({"target_modules": targets} if targets else {}))
    with torch.no_grad():
        for p in params:
            p.add_(0.1 * torch.randn_like(p))
    return pipe, params


# Attention only (the default), and attention + ResNet convolutions: a mixed set once saved attention keys
# in diffusers' legacy `lora.down` names beside peft's conv `lora_A` names, and the stock loader then
# silently dropped every attention adapter.
# alpha != rank: stock diffusers assumes alpha = rank unless the file carries the adapter's metadata, and
# then loaded the LoRA at the wrong strength (max pixel difference 0.87 at alpha 8, rank 4).
@pytest.mark.parametrize(
    ("targets", "alpha"),
    [(None, None), (["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "conv_out"], None), (None, 8.0)],
    ids=["attention", "attention+conv", "alpha-8-rank-4"],
)
def test_lora_loads_with_stock_load_lora_weights(tmp_path: Path, tiny_presets, targets, alpha) -> None:
    torch.manual_seed(0)
    pipe, params = _perturbed_lora_pipe(targets, alpha)
    assert params and all(p.dtype == torch.float32 and p.requires_grad for p in params)
    tuned = _sample(pipe)
    with adapters_disabled(pipe.unet):
        base = _sample(pipe)
    assert np.abs(tuned - base).mean() > 1e-3, "the adapter must change the samples"
    save_unet_lora(pipe.unet, tmp_path / "lora")
    fresh = load_pipeline("tiny")
    np.testing.assert_array_equal(_sample(fresh), base)
    fresh.load_lora_weights(tmp_path / "lora")
    loaded = sum(p.numel() for n, p in fresh.unet.named_parameters() if "lora_" in n)
    assert loaded == sum(p.numel() for p in params), "every adapter weight must load"
    np.testing.assert_allclose(_sample(fresh), tuned, atol=1e-6)


def test_init_lora_loads_at_its_trained_strength_or_says_which_knob_differs(
    tmp_path: Path, tiny_presets
) -> None:
    """`--init_lora` built the adapter from the new run's rank and alpha and copied only the weights: a LoRA
    trained at alpha 8, rank 4 started a default (alpha = rank) run at half its strength, without a word."""
    from canvas.core.errors import CanvasError

    torch.manual_seed(0)
    pipe, _ = _perturbed_lora_pipe(alpha=8.0)
    tuned = _sample(pipe)
    save_unet_lora(pipe.unet, tmp_path / "lora")
    for rank, alpha, knob in ((4, None, "lora_alpha 8"), (8, 8.0, "lora_rank 4")):
        with pytest.raises(CanvasError, match=knob):
            add_unet_lora(load_pipeline("tiny").unet, rank=rank, alpha=alpha, init_lora=tmp_path / "lora")
    with pytest.raises(CanvasError, match="lora_target_modules"):
        add_unet_lora(
            load_pipeline("tiny").unet,
            rank=4,
            alpha=8.0,
            target_modules=["to_q"],
            init_lora=tmp_path / "lora",
        )
    fresh = load_pipeline("tiny")
    add_unet_lora(fresh.unet, rank=4, alpha=8.0, init_lora=tmp_path / "lora")
    np.testing.assert_allclose(_sample(fresh), tuned, atol=1e-6)


def test_checkpoint_round_trip_and_rotation(tmp_path: Path, tiny_presets) -> None:
    torch.manual_seed(0)
    pipe, params = _perturbed_lora_pipe()
    opt = torch.optim.AdamW(params, lr=1e-3)
    params[0].grad = torch.ones_like(params[0])
    opt.step()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, pipe.unet, opt, extra_state={"epoch": step}, limit=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-3"]
    expected_next = torch.rand(3)

    torch.manual_seed(123)
    pipe2 = load_pipeline("tiny")
    params2 = add_unet_lora(pipe2.unet, rank=4)
    opt2 = torch.optim.AdamW(params2, lr=1e-3)
    state, _ = load_checkpoint(resolve_resume(tmp_path, "latest"), pipe2.unet, opt2)
    assert state == {"step": 3, "epoch": 3}
    assert all(torch.equal(a, b) for a, b in zip(params, params2, strict=True))
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    # The RNG continues exactly where it was when checkpoint-3 was written.
    assert torch.equal(torch.rand(3), expected_next)
    assert resolve_resume(tmp_path / "empty", "latest") is None


def test_lora_merged_samples_the_same_images_and_restores_the_base_bit_for_bit(tiny_presets) -> None:
    targets = ["to_q", "to_k", "to_v", "to_out.0", "conv_in", "conv1", "conv2", "conv_out"]
    pipe, _ = _perturbed_lora_pipe(targets, alpha=8.0)
    base = {k: v.clone() for k, v in pipe.unet.state_dict().items() if "lora_" not in k}
    unmerged = _sample(pipe)
    for _ in range(3):  # rounds: peft's unmerge alone leaves rounding behind each time
        with lora_merged(pipe.unet):
            merged = _sample(pipe)
    np.testing.assert_allclose(merged, unmerged, atol=1e-4)
    after = {k: v for k, v in pipe.unet.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(after[k], v) for k, v in base.items())
    np.testing.assert_array_equal(_sample(pipe), unmerged)  # the LoRA is back in its own layers
    with adapters_disabled(pipe.unet):
        plain = _sample(pipe)
    assert np.abs(plain - unmerged).max() > 1e-2  # the LoRA changes the samples: the check above can fail
