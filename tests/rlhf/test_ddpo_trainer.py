"""DDPO on the tiny preset (CPU, fixed seeds): the loss, resume to the same trajectory, outputs, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from canvas.core.errors import CanvasError
from canvas.core.presets.loading import load_pipeline
from canvas.rlhf.ddpo_config import DDPOConfig
from canvas.rlhf.ddpo_loss import ddpo_clipped_loss
from canvas.rlhf.ddpo_trainer import DDPOTrainer
from canvas.rlhf.tracking import read_metrics

PROMPTS = ["a red ball", "a cat on a mat", "a blue house"]


def small_config(output: Path, **overrides) -> DDPOConfig:
    """Every code path on: guidance in sampling and training, per-prompt tracking that switches on, inner
    epochs, half the timesteps, accumulation over two batches; a few seconds an epoch on CPU."""
    settings = dict(
        output_dir=str(output), mixed_precision="no", seed=3, num_epochs=2, checkpointing_steps=1, checkpoints_total_limit=1,
        sample_num_steps=4, sample_batch_size=2, sample_num_batches_per_epoch=2, train_batch_size=1,
        train_gradient_accumulation_steps=2, train_num_inner_epochs=2, train_timestep_fraction=0.5,
        learning_rate=3e-3, train_clip_range=1e-2, per_prompt_stat_tracking_buffer_size=4,
        per_prompt_stat_tracking_min_count=2, sample_grid_freq=2, sample_grid_size=4, eval_num_samples=2,
    )  # fmt: skip
    return DDPOConfig(**{**settings, **overrides})


def test_clipped_loss() -> None:
    adv = torch.tensor([1.0, -2.0, 8.0])
    same = torch.zeros(3)
    out = ddpo_clipped_loss(same, same, adv, clip_range=0.1, adv_clip_max=5.0)
    # Ratio 1: loss = -mean(clipped advantages), nothing clipped, no divergence.
    assert out.loss.item() == pytest.approx(-(1 - 2 + 5) / 3)
    assert out.approx_kl.item() == 0 and out.clipfrac.item() == 0
    # A ratio beyond the clip range in the advantage's direction gets no gradient; against it, it does.
    log_prob = torch.tensor([0.5, 0.5], requires_grad=True)
    out = ddpo_clipped_loss(
        log_prob, torch.zeros(2), torch.tensor([1.0, -1.0]), clip_range=0.1, adv_clip_max=5.0
    )
    out.loss.backward()
    assert log_prob.grad[0] == 0 and log_prob.grad[1] > 0
    assert out.clipfrac.item() == 1.0 and out.approx_kl.item() == pytest.approx(0.125)


def _lora(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "pytorch_lora_weights.safetensors")


def _trajectory(run: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "seconds"} for m in read_metrics(run)]


@pytest.mark.slow
def test_resume_repeats_the_uninterrupted_run_bitwise_and_writes_every_output(
    tmp_path: Path, tiny_presets
) -> None:
    straight = tmp_path / "straight"
    trainer = DDPOTrainer(small_config(straight), prompts=PROMPTS)
    before = [p.detach().clone() for p in trainer.params]
    summary = trainer.train()
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.params, strict=True)), (
        "every LoRA tensor trains"
    )

    resumed = tmp_path / "resumed"
    DDPOTrainer(small_config(resumed, num_epochs=1), prompts=PROMPTS).train()
    DDPOTrainer(small_config(resumed, resume_from_checkpoint="latest"), prompts=PROMPTS).train()

    lora_a, lora_b = _lora(straight), _lora(resumed)
    assert lora_a.keys() == lora_b.keys() and all(torch.equal(lora_a[k], lora_b[k]) for k in lora_a)
    assert _trajectory(straight) == _trajectory(resumed)
    metrics = read_metrics(straight)
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all({"reward_mean", "reward_std", "approx_kl", "clipfrac", "loss"} <= m.keys() for m in metrics)
    # 4 samples / 1 per batch / 2 accumulated = 2 optimizer steps per inner epoch, 2 inner epochs.
    assert metrics[-1]["optimizer_steps"] == 2 * 2 * 2

    # Outputs: checkpoints rotated, a grid every 2 epochs, TensorBoard, summary, reward curve.
    assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert sorted(p.name for p in (straight / "samples").iterdir()) == ["epoch-0002.png"]
    assert any((straight / "tensorboard").iterdir()) and (straight / "reward_curve.png").stat().st_size > 0
    on_disk = json.loads((straight / "summary.json").read_text())
    assert on_disk["optimizer_steps"] == 8 and {"eval_reward_base", "eval_reward_tuned"} <= on_disk.keys()
    assert on_disk["eval_reward_tuned"] == summary["eval_reward_tuned"]

    # Stock diffusers loads the LoRA, and it changes what the pipeline draws.
    pipe = load_pipeline("tiny")
    kwargs = dict(num_inference_steps=4, eta=1.0, output_type="pt")
    base = pipe(PROMPTS, generator=torch.Generator().manual_seed(0), **kwargs).images
    pipe.load_lora_weights(straight)
    tuned = pipe(PROMPTS, generator=torch.Generator().manual_seed(0), **kwargs).images
    assert (tuned - base).abs().max() > 1e-4


def test_bad_inputs_fail_early_with_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CanvasError, match="unknown reward 'sharpness'"):
        DDPOTrainer(small_config(tmp_path, reward="sharpness"), prompts=PROMPTS)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n")
    with pytest.raises(CanvasError, match="no prompts in"):
        DDPOTrainer(small_config(tmp_path, prompts=str(empty)))
    with pytest.raises(CanvasError, match="multiple of train_batch_size"):
        small_config(tmp_path, train_batch_size=3)
    with pytest.raises(CanvasError, match="sample_eta must be > 0"):
        small_config(tmp_path, sample_eta=0.0)


class _BrokenReward:
    def __init__(self, kind: str) -> None:
        self.name, self.kind = f"broken-{kind}", kind

    def __call__(self, images: torch.Tensor, prompts) -> torch.Tensor:
        if self.kind == "nan":
            out = torch.ones(images.shape[0])
            out[1] = float("nan")
            return out
        return torch.ones(images.shape[0], 2)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("nan", r"epoch 1: reward 'broken-nan' returned non-finite values at batch positions \[1\]"),
        ("shape", r"epoch 1: reward 'broken-shape' returned shape \(2, 2\), expected \(2,\)"),
    ],
)
def test_broken_reward_stops_with_the_epoch(tmp_path: Path, tiny_presets, kind: str, message: str) -> None:
    trainer = DDPOTrainer(small_config(tmp_path), reward=_BrokenReward(kind), prompts=PROMPTS)
    with pytest.raises(CanvasError, match=message):
        trainer.train()
    assert not (tmp_path / "pytorch_lora_weights.safetensors").exists()


def test_diverging_training_stops_with_the_step_number(tmp_path: Path, tiny_presets) -> None:
    # A learning rate this large overflows the LoRA after the first optimizer step.
    trainer = DDPOTrainer(
        small_config(tmp_path, learning_rate=1e30, train_num_inner_epochs=1), prompts=PROMPTS
    )
    with pytest.raises(CanvasError, match=r"non-finite loss at epoch 1, optimizer step 2 \(timestep \d+\)"):
        trainer.train()


def test_learning_rate_schedule_follows_the_optimizer_steps(tmp_path: Path, tiny_presets) -> None:
    config = small_config(tmp_path, lr_scheduler="linear", lr_warmup_steps=1, num_epochs=3)
    # 2 samples x 2 batches / train batch 1 / accumulation 2 x 2 inner epochs = 4 optimizer steps an epoch
    assert config.optimizer_steps_per_epoch == 4
    factors = [config.lr_factor(step) for step in range(12)]
    assert factors[0] == 1.0 and factors[1] == 1.0 and factors[-1] == pytest.approx(1 / 11)
    assert all(a > b for a, b in zip(factors[1:-1], factors[2:], strict=True))
    cosine = small_config(tmp_path, lr_scheduler="cosine", num_epochs=3)
    assert cosine.lr_factor(0) == 1.0 and cosine.lr_factor(6) == pytest.approx(0.5)
    assert small_config(tmp_path).lr_factor(11) == 1.0  # constant, the default
    DDPOTrainer(config, prompts=PROMPTS).train()
    logged = [m["learning_rate"] for m in read_metrics(tmp_path)]
    # each epoch logs the rate of its last optimizer step: steps 3, 7, 11
    assert logged == pytest.approx([3e-3 * factors[i] for i in (3, 7, 11)])
    with pytest.raises(CanvasError, match="lr_scheduler must be one of constant, cosine, linear"):
        small_config(tmp_path, lr_scheduler="step")


@pytest.mark.parametrize("which", ["earliest", "random"])
def test_train_timesteps_chooses_which_steps_are_trained(
    tmp_path: Path, tiny_presets, monkeypatch, which: str
) -> None:
    import canvas.rlhf.ddpo_trainer as ddpo_trainer

    trained: set[int] = set()
    original = ddpo_trainer.transition_log_prob

    def recording(unet, scheduler, latents, next_latents, timesteps, *rest):
        trained.update(int(t) for t in timesteps)
        return original(unet, scheduler, latents, next_latents, timesteps, *rest)

    monkeypatch.setattr(ddpo_trainer, "transition_log_prob", recording)
    config = small_config(tmp_path, num_epochs=1, sample_num_steps=8, train_timesteps=which)
    trainer = DDPOTrainer(config, prompts=PROMPTS)
    trainer.train()
    schedule = [int(t) for t in trainer.pipe.scheduler.timesteps]  # noisiest first
    if which == "earliest":  # half of 8: the sampler's first 4 steps, every time
        assert trained == set(schedule[:4])
    else:  # a random half per sample: later steps get trained too
        assert trained - set(schedule[:4])


def test_train_earliest_epochs_trains_the_earliest_steps_first_then_all(
    tmp_path: Path, tiny_presets, monkeypatch
) -> None:
    import canvas.rlhf.ddpo_trainer as ddpo_trainer

    calls: list[int] = []
    original = ddpo_trainer.transition_log_prob

    def recording(unet, scheduler, latents, next_latents, timesteps, *rest):
        calls.append(int(timesteps[0]))
        return original(unet, scheduler, latents, next_latents, timesteps, *rest)

    monkeypatch.setattr(ddpo_trainer, "transition_log_prob", recording)
    config = small_config(
        tmp_path, num_epochs=2, sample_num_steps=8, train_timesteps="earliest", train_earliest_epochs=1
    )
    trainer = DDPOTrainer(config, prompts=PROMPTS)
    trainer.train()
    schedule = [int(t) for t in trainer.pipe.scheduler.timesteps]
    batches = config.train_num_inner_epochs * 4 // config.train_batch_size  # 4 samples per epoch
    first, second = calls[: batches * 4], calls[batches * 4 :]
    assert set(first) == set(schedule[:4]) and sorted(set(second)) == sorted(schedule)
    assert len(second) == batches * 8
    # every epoch ends with the same number of optimizer steps, however many timesteps it trained
    steps = [m["optimizer_steps"] for m in read_metrics(tmp_path)]
    assert steps == [config.optimizer_steps_per_epoch, 2 * config.optimizer_steps_per_epoch]
    with pytest.raises(CanvasError, match="train_earliest_epochs must be >= 0"):
        small_config(tmp_path, train_earliest_epochs=-1)


def test_an_optimizer_step_waits_for_the_whole_batch_when_the_trained_steps_change(
    tmp_path: Path, tiny_presets, monkeypatch
) -> None:
    """3 trained steps a batch, then 6: accelerate's call counter runs on across epochs, so unless it is
    reset each epoch the 6-step epoch stepped the optimizer after 3 of a batch's calls and carried the
    other 3 gradients into the next epoch (or dropped them at the end of the run)."""
    import canvas.rlhf.ddpo_trainer as ddpo_trainer

    syncs: list[tuple[int, bool]] = []
    original = ddpo_trainer.DDPOTrainer._train_call

    def recording(self, pairs, weight, guidance, epoch, info):
        original(self, pairs, weight, guidance, epoch, info)
        syncs.append((epoch, self.accelerator.sync_gradients))

    monkeypatch.setattr(ddpo_trainer.DDPOTrainer, "_train_call", recording)
    config = small_config(
        tmp_path, num_epochs=3, sample_num_steps=6, sample_batch_size=3, sample_num_batches_per_epoch=1,
        train_gradient_accumulation_steps=1, train_num_inner_epochs=1, train_timesteps="earliest",
        train_earliest_epochs=1, per_prompt_stat_tracking=False, sample_grid_freq=0, eval_num_samples=0,
    )  # fmt: skip
    trainer = DDPOTrainer(config, prompts=PROMPTS)
    trainer.train()
    for epoch, trained in ((0, 3), (1, 6), (2, 6)):
        flags = [sync for e, sync in syncs if e == epoch]
        # 3 samples, one a batch: an optimizer step after each batch's last call, and only then
        assert flags == ([False] * (trained - 1) + [True]) * 3, epoch
    assert all(p.grad is None or not p.grad.any() for p in trainer.params)


def test_advantage_baseline_gives_each_trained_step_its_own_advantage(
    tmp_path: Path, tiny_presets, monkeypatch
) -> None:
    import canvas.rlhf.ddpo_trainer as ddpo_trainer
    from canvas.rlhf.rewards import JpegSizeReward

    scored: list[int] = []
    advantages: list[float] = []
    jpeg = JpegSizeReward()

    def reward(images, prompts):
        scored.append(len(images))
        return jpeg(images, prompts)

    original = ddpo_trainer.ddpo_clipped_loss

    def recording(log_prob, old_log_prob, adv, *rest):
        advantages.append(float(adv[0]))
        return original(log_prob, old_log_prob, adv, *rest)

    monkeypatch.setattr(ddpo_trainer, "ddpo_clipped_loss", recording)
    config = small_config(
        tmp_path, num_epochs=1, sample_num_steps=8, train_timesteps="earliest", train_num_inner_epochs=1,
        train_gradient_accumulation_steps=1, per_prompt_stat_tracking=False, eval_num_samples=0,
        advantage_baseline="predicted_x0", advantage_baseline_every=2,
    )  # fmt: skip
    DDPOTrainer(config, reward=reward, prompts=PROMPTS).train()
    # per batch of 2 samples: the 2 final images, then values before trained steps 0 and 2 of 0-3
    assert scored == [2, 4, 2, 4]
    # each sample's 4 trained steps in order (batch size 1): steps 0-1 share a value, 2-3 the next one
    per_sample = [advantages[i : i + 4] for i in range(0, len(advantages), 4)]
    assert len(per_sample) == 4
    for adv in per_sample:
        assert adv[0] == adv[1] and adv[2] == adv[3] and adv[0] != adv[2]
    # advantage_baseline_start_epoch: the epochs before it score final images only, one advantage a sample
    scored.clear()
    advantages.clear()
    config = small_config(
        tmp_path / "late", num_epochs=2, sample_num_steps=8, train_timesteps="earliest", train_num_inner_epochs=1,
        train_gradient_accumulation_steps=1, per_prompt_stat_tracking=False, eval_num_samples=0,
        advantage_baseline="predicted_x0", advantage_baseline_every=2, advantage_baseline_start_epoch=1,
    )  # fmt: skip
    DDPOTrainer(config, reward=reward, prompts=PROMPTS).train()
    assert scored == [2, 2] + [2, 4, 2, 4]
    per_sample = [advantages[i : i + 4] for i in range(0, len(advantages), 4)]
    assert all(len(set(adv)) == 1 for adv in per_sample[:4])
    assert all(adv[0] != adv[2] for adv in per_sample[4:])
    with pytest.raises(CanvasError, match="advantage_baseline_start_epoch must be >= 0"):
        small_config(tmp_path, per_prompt_stat_tracking=False, advantage_baseline_start_epoch=-1)
    with pytest.raises(CanvasError, match="advantage_baseline needs per_prompt_stat_tracking: false"):
        small_config(tmp_path, advantage_baseline="predicted_x0")
    with pytest.raises(CanvasError, match="advantage_baseline must be one of none, predicted_x0"):
        small_config(tmp_path, per_prompt_stat_tracking=False, advantage_baseline="value_net")


def test_timesteps_per_forward_trains_the_same_lora_in_fewer_unet_calls(
    tmp_path: Path, tiny_presets, monkeypatch
) -> None:
    import canvas.rlhf.ddpo_trainer as ddpo_trainer

    original = ddpo_trainer.transition_log_prob
    calls: list[int] = []

    def recording(unet, scheduler, latents, next_latents, timesteps, *rest):
        calls.append(len(latents))
        return original(unet, scheduler, latents, next_latents, timesteps, *rest)

    monkeypatch.setattr(ddpo_trainer, "transition_log_prob", recording)
    loras, counts = {}, {}
    # 3 trained steps a batch: stacked 2 + 1, so the uneven call's weight is checked too. Adam with eps 1
    # steps in proportion to the gradient: with the default eps it moves an element whose gradient is
    # ~0 a full step either way, so float rounding alone set 1% of the weights apart.
    for per_forward in (1, 2):
        calls.clear()
        run = tmp_path / f"per{per_forward}"
        config = small_config(
            run, num_epochs=1, sample_num_steps=4, train_timestep_fraction=0.75,
            train_timesteps_per_forward=per_forward, per_prompt_stat_tracking=False,
            train_adam_epsilon=1.0, learning_rate=1.0,
        )  # fmt: skip
        DDPOTrainer(config, prompts=PROMPTS).train()
        loras[per_forward], counts[per_forward] = _lora(run), list(calls)
    batches = 2 * 4 // 1  # inner epochs x samples / train batch
    assert counts[1] == [1] * (3 * batches)  # a call per step of a one-sample batch
    assert counts[2] == [2, 1] * batches
    assert loras[1].keys() == loras[2].keys()
    for name, weight in loras[1].items():  # measured: at most 2.5e-5 of the largest element apart
        assert (loras[2][name] - weight).abs().max() <= 1e-3 * weight.abs().max(), name
    assert any(w.abs().max() > 0 for name, w in loras[1].items() if "lora_B" in name)  # it trained
    with pytest.raises(CanvasError, match="train_timesteps_per_forward must be >= 1"):
        small_config(tmp_path, train_timesteps_per_forward=0)


def test_sampling_with_the_lora_merged_follows_the_same_run_and_leaves_the_base_as_loaded(
    tmp_path: Path, tiny_presets
) -> None:
    runs = {}
    for merged in (False, True):
        config = small_config(
            tmp_path / str(merged), num_epochs=3, sample_merged_lora=merged, checkpointing_steps=100
        )
        trainer = DDPOTrainer(config, prompts=PROMPTS)
        trainer.train()
        runs[merged] = [m["reward_mean"] for m in read_metrics(tmp_path / str(merged))], trainer
    (plain, _), (merged, trainer) = runs[False], runs[True]
    assert merged[0] == plain[0]  # epoch 1 samples the base (LoRA B starts at zero)
    assert merged == pytest.approx(plain, abs=1e-4)  # later epochs: float rounding apart, same policy
    base = load_pipeline("tiny").unet.state_dict()
    for name, weight in trainer.pipe.unet.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(weight, base[name.replace(".base_layer", "")]), name


def test_advantage_top_fraction_trains_the_largest_advantages_as_the_full_loss_would(
    tmp_path: Path, tiny_presets, monkeypatch
) -> None:
    import canvas.rlhf.ddpo_trainer as ddpo_trainer

    original = ddpo_trainer.ddpo_clipped_loss
    seen: list[torch.Tensor] = []
    threshold: list[float] = []

    def recording(log_prob, old_log_prob, advantages, *rest):
        seen.append(advantages.detach().clone())
        if threshold:  # the full loss with the pairs below the kept ones' smallest |advantage| zeroed
            advantages = torch.where(advantages.abs() >= threshold[0], advantages, 0.0)
        return original(log_prob, old_log_prob, advantages, *rest)

    monkeypatch.setattr(ddpo_trainer, "ddpo_clipped_loss", recording)
    # One optimizer step over the epoch (4 samples, train batch 4), so both runs group the same pairs; a
    # baseline value per step, so no two pairs tie on |advantage|. Adam with eps 1: see the test above.
    settings = dict(
        num_epochs=1, sample_num_steps=4, train_timestep_fraction=1.0, train_batch_size=4,
        train_gradient_accumulation_steps=1, train_num_inner_epochs=1, per_prompt_stat_tracking=False,
        advantage_baseline="predicted_x0", train_adam_epsilon=1.0, learning_rate=1.0, eval_num_samples=0,
    )  # fmt: skip
    DDPOTrainer(small_config(tmp_path / "all", **settings), prompts=PROMPTS).train()
    every = torch.cat(seen)
    seen.clear()
    DDPOTrainer(
        small_config(tmp_path / "top", train_advantage_top_fraction=0.5, **settings), prompts=PROMPTS
    ).train()
    kept = torch.cat(seen)
    assert len(every) == 4 * 4 and len(kept) == 8  # half the (sample, step) pairs went through the UNet
    assert torch.equal(kept.abs().sort().values, every.abs().sort().values[8:])  # the largest |advantage|
    threshold.append(kept.abs().min().item())
    seen.clear()
    DDPOTrainer(small_config(tmp_path / "zeroed", **settings), prompts=PROMPTS).train()
    top, zeroed = _lora(tmp_path / "top"), _lora(tmp_path / "zeroed")
    for name, weight in zeroed.items():
        assert (top[name] - weight).abs().max() <= 1e-3 * weight.abs().max(), name
    assert any(w.abs().max() > 0 for name, w in top.items() if "lora_B" in name)  # it trained
    with pytest.raises(CanvasError, match=r"train_advantage_top_fraction must be in \(0, 1\]"):
        small_config(tmp_path, train_advantage_top_fraction=0.0)
