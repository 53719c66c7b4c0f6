"""`DraftTrainer`: DRaFT-K / DRaFT-LV / AlignProp fine-tuning of a UNet LoRA on a differentiable reward.

One optimizer step: for each micro-batch, draw prompts and initial noise, run DDIM with no graph for the
first T - K steps and with the graph through the last K (DRaFT-LV instead re-noises the finished latents
`lv_draws` times at the last timestep and denoises each copy with the graph), decode with the VAE, score
with the reward, backpropagate `-mean(reward)` into the LoRA; then average gradients across processes,
clip, step AdamW. Only LoRA weights train (VAE, text encoder, UNet and reward are frozen).

Randomness of step `s` comes from generators seeded by `(seed, s, micro-batch, process)`, so a run resumed
from a checkpoint repeats the uninterrupted run bit for bit (CPU), and every process of an `accelerate
launch` run draws its own prompts and noise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from canvas.core.errors import CanvasError
from canvas.core.formats.prompts import training_prompts
from canvas.rlhf.ddim_logprob import decode_latents, encode_prompts, predict_noise
from canvas.rlhf.diffusion_model import load_ddim_sampling_pipeline
from canvas.rlhf.draft_config import DraftConfig
from canvas.rlhf.draft_rewards import load_differentiable_reward
from canvas.rlhf.launch import create_accelerator
from canvas.rlhf.lora import adapters_disabled, add_unet_lora, save_unet_lora
from canvas.rlhf.rewards import Reward
from canvas.rlhf.tracking import RunLogger, read_metrics
from canvas.rlhf.trainer_base import TrainerBase

logger = logging.getLogger(__name__)


def step_generator(seed: int, step: int, micro: int, process_index: int = 0) -> torch.Generator:
    """An independent, reproducible stream per (run seed, optimizer step, micro-batch, process)."""
    state = np.random.SeedSequence([seed, step, micro, process_index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def draft_denoise(
    pipe: Any,
    unet: Any,
    latents: torch.Tensor,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    guidance_scale: float,
    eta: float,
    grad_steps: int,
    generator: torch.Generator,
    on_step: Any = None,
) -> torch.Tensor:
    """DDIM from `latents` over the scheduler's set timesteps; only the last `grad_steps` keep the graph.

    `on_step(i, t, grad)` (tests) sees every step and whether it ran with gradients.
    """
    scheduler = pipe.scheduler
    timesteps = scheduler.timesteps
    first_grad = len(timesteps) - grad_steps
    for i, t in enumerate(timesteps):
        grad = i >= first_grad
        if i == first_grad:
            latents = latents.detach()  # truncated backpropagation: nothing before step T - K
        with torch.set_grad_enabled(grad):
            noise_pred = predict_noise(
                unet,
                scheduler.scale_model_input(latents, t),
                t,
                prompt_embeds,
                negative_embeds,
                guidance_scale,
            )
            latents = scheduler.step(noise_pred, t, latents, eta=eta, generator=generator).prev_sample
        if on_step is not None:
            on_step(i, int(t), grad)
    return latents


class DraftTrainer(TrainerBase):
    """`DraftTrainer(config).train()` fine-tunes a LoRA on `config.pretrained`'s UNet to raise `config.reward`.

    `reward` / `prompts` override the config's (a differentiable callable, an in-memory prompt list).
    """

    def __init__(
        self, config: DraftConfig, reward: Reward | None = None, prompts: Sequence[str] | None = None
    ) -> None:
        self.config = cfg = config
        # 1. inputs first: a non-differentiable reward or a bad prompt file fails before any model loads
        self.reward = reward if reward is not None else load_differentiable_reward(cfg.reward)
        self.prompts = training_prompts(prompts, cfg.prompts)

        # 2. accelerator, output folder
        mixed = cfg.mixed_precision
        if mixed == "fp16" and not torch.cuda.is_available():
            logger.warning("fp16 mixed precision needs CUDA; running in fp32 on this machine")
            mixed = "no"
        self.accelerator = create_accelerator(mixed_precision=mixed)
        self._claim_output_dir()
        if hasattr(self.reward, "to"):  # a reward model scores on the device the images are made on
            self.reward.to(self.accelerator.device)

        # 3. pipeline, LoRA, optimizer (gradients are averaged by hand: see `_sync_gradients`)
        self.pipe = load_ddim_sampling_pipeline(cfg.pretrained, self.accelerator.device, mixed, "DRaFT")
        unet = self.pipe.unet
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # the LoRA's random init is part of the run's seed
            self.params = add_unet_lora(
                unet, cfg.lora_rank, cfg.lora_alpha, cfg.lora_target_modules, cfg.init_lora
            )
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        self.unet = unet
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg.learning_rate, weight_decay=cfg.adam_weight_decay
        )
        # fp16 gradients of the reward through the VAE decoder and K denoising steps underflow without
        # loss scaling (the optimizer is not accelerate-prepared, so acc.backward would not scale them);
        # disabled (pass-through) in fp32 and bf16. Its state is checkpointed: a resumed fp16 run goes on
        # at the scale it had found, not from the default's skipped overflow steps.
        self.scaler = torch.amp.GradScaler("cuda", enabled=mixed == "fp16")

        # 4. resume, logging
        self.start_step, self.reward_queries = 0, 0
        resumed = self._resume(unet, self.optimizer)
        if resumed is not None:
            self.start_step = int(resumed[0]["step"])
            self.reward_queries = int(resumed[0]["reward_queries"])
            if resumed[0].get("grad_scaler"):  # {} when the scaler is off (fp32, bf16)
                self.scaler.load_state_dict(resumed[0]["grad_scaler"])
            logger.info("resumed from %s (step %d)", self.resume_checkpoint, self.start_step)
        self.run_logger: RunLogger | None = self._open_logger(self.start_step if resumed else None)

    # ---- sampling ----
    def generate(
        self, prompts: list[str], gen: torch.Generator, grad: bool, on_step: Any = None
    ) -> tuple[torch.Tensor, list[str]]:
        """Images `(N, 3, H, W)` in [0, 1] and their prompts; with `grad`, the graph of the last K steps
        (or of the DRaFT-LV re-noised copies, N = lv_draws * len(prompts))."""
        cfg, pipe = self.config, self.pipe
        lv = cfg.lv_draws if grad else 0
        with torch.no_grad():
            prompt_embeds, negative = encode_prompts(pipe, prompts, cfg.negative_prompt)
        pipe.scheduler.set_timesteps(cfg.sample_num_steps, device=pipe.device)
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        latents = pipe.prepare_latents(
            len(prompts), pipe.unet.config.in_channels, size, size, prompt_embeds.dtype, pipe.device, gen
        )
        k = cfg.draft_k if grad and not lv else 0
        with self.accelerator.autocast():
            latents = draft_denoise(
                pipe,
                self.unet,
                latents,
                prompt_embeds,
                negative,
                cfg.guidance_scale,
                cfg.sample_eta,
                k,
                gen,
                on_step,
            )
            if lv:
                latents, prompts = self._lv_redenoise(latents, prompt_embeds, negative, prompts, gen, on_step)
        with torch.set_grad_enabled(grad):
            return decode_latents(pipe, latents), prompts

    def _lv_redenoise(
        self,
        latents: torch.Tensor,
        prompt_embeds: torch.Tensor,
        negative: torch.Tensor,
        prompts: list[str],
        gen: torch.Generator,
        on_step: Any,
    ) -> tuple[torch.Tensor, list[str]]:
        """DRaFT-LV: `lv_draws` copies of the finished latents, each noised to the last timestep and
        denoised by one step with gradients."""
        from diffusers.utils.torch_utils import randn_tensor

        cfg, scheduler = self.config, self.pipe.scheduler
        t = scheduler.timesteps[-1]
        n = cfg.lv_draws
        x0 = latents.detach().repeat(n, 1, 1, 1)
        noise = randn_tensor(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        noisy = scheduler.add_noise(x0, noise, t.reshape(1))
        embeds, neg = prompt_embeds.repeat(n, 1, 1), negative.repeat(n, 1, 1)
        noise_pred = predict_noise(
            self.unet, scheduler.scale_model_input(noisy, t), t, embeds, neg, cfg.guidance_scale
        )
        out = scheduler.step(noise_pred, t, noisy, eta=cfg.sample_eta, generator=gen).prev_sample
        if on_step is not None:
            on_step(len(scheduler.timesteps), int(t), True)
        return out, prompts * n

    # ---- the loop ----
    def train(self) -> dict[str, Any]:
        """Optimizer steps `start_step .. max_steps - 1`; save the LoRA and summary.json; return the summary."""
        from tqdm.auto import tqdm

        cfg, acc = self.config, self.accelerator
        started = time.monotonic()
        bar = tqdm(range(self.start_step, cfg.max_steps), desc="DRaFT", disable=not acc.is_main_process)
        self.unet.train()
        for step in bar:
            t0 = time.monotonic()
            metrics = self.train_step(step)
            metrics["seconds"] = time.monotonic() - t0
            bar.set_postfix(reward=f"{metrics['reward_mean']:.4g}")
            if self.run_logger is not None:
                self.run_logger.log(step + 1, metrics)
            if (step + 1) % cfg.checkpointing_steps == 0 or step + 1 == cfg.max_steps:
                self._save_checkpoint(
                    step + 1, self.unet, self.optimizer,
                    extra_state={"reward_queries": self.reward_queries, "grad_scaler": self.scaler.state_dict()},
                )  # fmt: skip
        return self._finish(time.monotonic() - started)

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step over `gradient_accumulation_steps` micro-batches; returns its metrics."""
        cfg, acc = self.config, self.accelerator
        rewards_seen = []
        for micro in range(cfg.gradient_accumulation_steps):
            gen = step_generator(cfg.seed, step, micro, acc.process_index)
            ids = torch.randint(len(self.prompts), (cfg.train_batch_size,), generator=gen)
            prompts = [self.prompts[i] for i in ids.tolist()]
            images, scored_prompts = self.generate(prompts, gen, grad=True)
            rewards = self.reward(images, scored_prompts)
            if rewards.shape != (images.shape[0],) or not torch.isfinite(rewards).all():
                raise CanvasError(
                    f"step {step + 1}: reward {getattr(self.reward, 'name', 'reward')!r} returned "
                    f"{'non-finite values' if rewards.shape == (images.shape[0],) else f'shape {tuple(rewards.shape)}'}"
                )
            if not rewards.requires_grad:
                raise CanvasError(
                    f"reward {getattr(self.reward, 'name', 'reward')!r} returned no gradient: DRaFT needs a "
                    "differentiable reward (use `canvas train ddpo` for others)"
                )
            loss = -rewards.float().mean() / cfg.gradient_accumulation_steps
            self.scaler.scale(loss).backward()
            rewards_seen.append(rewards.detach().float())
        self._sync_gradients()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm or float("inf"))
        if not torch.isfinite(grad_norm) and not self.scaler.is_enabled():  # fp16: the scaler skips the step
            raise CanvasError(
                f"training diverged: non-finite gradient at optimizer step {step + 1}; lower learning_rate"
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        local = torch.cat(rewards_seen).to(acc.device)
        everyone = acc.gather(local).cpu()
        self.reward_queries += int(everyone.numel())
        return {
            "reward_mean": everyone.mean().item(),
            "reward_std": everyone.std(unbiased=False).item(),
            "loss": -everyone.mean().item(),
            "grad_norm": float(grad_norm),
            "reward_queries": self.reward_queries,
        }

    def _sync_gradients(self) -> None:
        """Average LoRA gradients across processes (several forward passes with a graph per backward do
        not suit DDP's hooks, so the unwrapped UNet trains and the gradients meet here)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad = acc.reduce(p.grad, reduction="mean")

    # ---- outputs ----
    @torch.no_grad()
    def evaluate(self, num_samples: int, seed: int) -> dict[str, float]:
        """Mean reward of fresh samples with and without the LoRA, drawn with the same noise."""
        cfg = self.config
        prompts = [self.prompts[i % len(self.prompts)] for i in range(num_samples)]
        self.unet.eval()
        scores: dict[str, list[torch.Tensor]] = {"base": [], "tuned": []}
        for which in scores:
            gen = torch.Generator().manual_seed(seed)
            for start in range(0, num_samples, cfg.train_batch_size):
                chunk = prompts[start : start + cfg.train_batch_size]
                if which == "base":
                    with adapters_disabled(self.unet):
                        images, _ = self.generate(chunk, gen, grad=False)
                else:
                    images, _ = self.generate(chunk, gen, grad=False)
                scores[which].append(self.reward(images, chunk).float().cpu())
        base, tuned = (torch.cat(v).mean().item() for v in scores.values())
        return {"eval_reward_base": base, "eval_reward_tuned": tuned}

    def _finish(self, seconds: float) -> dict[str, Any]:
        """The LoRA (diffusers format, adapter metadata included), then summary.json."""
        acc, cfg = self.accelerator, self.config
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return {}
        lora_file = save_unet_lora(self.unet, self.output_dir, pipeline_cls=type(self.pipe))
        history = read_metrics(self.output_dir)
        summary: dict[str, Any] = {
            "method": "draft-lv" if cfg.lv_draws else f"draft-{cfg.draft_k}",
            "pretrained": cfg.pretrained,
            "reward": getattr(self.reward, "name", cfg.reward),
            "steps": cfg.max_steps,
            "draft_k": cfg.draft_k,
            "lv_draws": cfg.lv_draws,
            "num_processes": acc.num_processes,
            "reward_queries": self.reward_queries,
            "reward_mean_first_step": history[0]["reward_mean"] if history else None,
            "reward_mean_last_step": history[-1]["reward_mean"] if history else None,
            "training_seconds": sum(m.get("seconds", 0.0) for m in history),
            "seconds_this_session": seconds,
            "lora": str(lora_file),
            "pipeline": type(self.pipe).__name__,
            "config": asdict(cfg),
        }
        if cfg.eval_num_samples > 0:
            summary.update(self.evaluate(cfg.eval_num_samples, seed=cfg.seed + 1_000_003))
            summary["eval_gain"] = summary["eval_reward_tuned"] - summary["eval_reward_base"]
        self.run_logger.write_summary(summary)
        self.run_logger.close()
        return summary
