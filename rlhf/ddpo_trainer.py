"""`DDPOTrainer`: reinforcement learning of a diffusion model against a reward (Black et al. 2023).

Each epoch: sample images with DDIM (eta > 0) recording every step's log-probability, score them, turn
rewards into advantages (per prompt or per batch, or per step against a baseline), then take PPO-clipped
policy-gradient steps on the UNet's LoRA, visiting each trajectory's timesteps in a random order and accumulating gradients over them.

Randomness of epoch `e` comes from its own generator seeded by `(seed, e, process)`, so a run resumed
from a checkpoint repeats the uninterrupted run's trajectory exactly (CPU), and each GPU of an
`accelerate launch` run draws different prompts and noise.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from canvas.core.errors import CanvasError
from canvas.core.formats.prompts import training_prompts
from canvas.rlhf.ddim_logprob import decode_latents, sample_with_logprob, transition_log_prob
from canvas.rlhf.ddpo_config import DDPOConfig
from canvas.rlhf.ddpo_loss import ddpo_clipped_loss
from canvas.rlhf.ddpo_plots import plot_reward_curve, save_sample_grid
from canvas.rlhf.diffusion_model import load_ddim_sampling_pipeline
from canvas.rlhf.launch import create_accelerator
from canvas.rlhf.lora import adapters_disabled, add_unet_lora, lora_merged, save_unet_lora
from canvas.rlhf.rewards import Reward, load_reward, score_checked
from canvas.rlhf.stat_tracking import (
    PerPromptStatTracker,
    batch_normalized_advantages,
    step_baseline_advantages,
    top_advantage_pairs,
)
from canvas.rlhf.tracking import RunLogger, read_metrics
from canvas.rlhf.trainer_base import TrainerBase

logger = logging.getLogger(__name__)


# per (sample, step) and per sample: what a training call stacks (the negative prompt's only with train_cfg)
_STEP_KEYS = ("latents", "next_latents", "log_probs", "timesteps", "advantages")
_SAMPLE_KEYS = ("prompt_embeds", "negative_prompt_embeds")


def epoch_generator(seed: int, epoch: int, process_index: int = 0) -> torch.Generator:
    """An independent, reproducible stream per (run seed, epoch, process)."""
    state = np.random.SeedSequence([seed, epoch, process_index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class DDPOTrainer(TrainerBase):
    """`DDPOTrainer(config).train()` fine-tunes a LoRA on the UNet of `config.pretrained` against `config.reward`.

    `reward` / `prompts` override the config's (a custom reward callable, an in-memory prompt list).
    """

    def __init__(
        self, config: DDPOConfig, reward: Reward | None = None, prompts: Sequence[str] | None = None
    ) -> None:
        self.config = cfg = config
        # 1. inputs first: a bad prompt file or reward name fails before any model loads
        self.prompts = training_prompts(prompts, cfg.prompts)
        self.reward = reward if reward is not None else load_reward(cfg.reward)

        # 2. accelerator: gradients accumulate over the trained timesteps of every batch
        mixed = cfg.mixed_precision
        if mixed == "fp16" and not torch.cuda.is_available():
            logger.warning("fp16 mixed precision needs CUDA; running in fp32 on this machine")
            mixed = "no"
        self.accelerator = create_accelerator(
            mixed_precision=mixed,
            gradient_accumulation_steps=cfg.train_gradient_accumulation_steps * cfg.num_train_timesteps,
        )
        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = cfg.allow_tf32
        # the folder: a previous run's files or a resume with other settings fail before the model loads
        self._claim_output_dir()

        # 3. pipeline, LoRA, optimizer
        self.pipe = load_ddim_sampling_pipeline(cfg.pretrained, self.accelerator.device, mixed, "DDPO")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # the LoRA's random init is part of the run's seed
            self.params = add_unet_lora(
                self.pipe.unet,
                rank=cfg.lora_rank,
                alpha=cfg.lora_alpha,
                target_modules=cfg.lora_target_modules,
                init_lora=cfg.init_lora,
            )
        optimizer = torch.optim.AdamW(
            self.params,
            lr=cfg.learning_rate,
            betas=(cfg.train_adam_beta1, cfg.train_adam_beta2),
            weight_decay=cfg.train_adam_weight_decay,
            eps=cfg.train_adam_epsilon,
        )

        # 4. advantages, resume, logging
        self.stat_tracker = PerPromptStatTracker(
            cfg.per_prompt_stat_tracking_buffer_size, cfg.per_prompt_stat_tracking_min_count
        )
        self.start_epoch, self.optimizer_steps = 0, 0
        resumed = self._resume(self.pipe.unet, optimizer)
        if resumed is not None:
            state = resumed[0]
            self.start_epoch, self.optimizer_steps = state["epoch"], state["optimizer_steps"]
            self.stat_tracker.load_state_dict(state["stat_tracker"])
            logger.info("resumed from %s (epoch %d)", self.resume_checkpoint, self.start_epoch)
        self.unet, self.optimizer = self.accelerator.prepare(self.pipe.unet, optimizer)
        self.run_logger: RunLogger | None = self._open_logger(self.start_epoch if resumed else None)

    # ---- the loop ----
    def train(self) -> dict[str, Any]:
        """Run epochs `start_epoch .. num_epochs - 1`; save the LoRA and summary.json; return the summary."""
        from tqdm.auto import tqdm

        cfg, acc = self.config, self.accelerator
        started = time.monotonic()
        bar = tqdm(range(self.start_epoch, cfg.num_epochs), desc="DDPO", disable=not acc.is_main_process)
        for epoch in bar:
            t0 = time.monotonic()
            gen = epoch_generator(cfg.seed, epoch, acc.process_index)
            samples, prompts = self.sample_epoch(epoch, gen)
            rewards = self._gather_rewards_and_set_advantages(samples, prompts)
            train_info = self.train_on_samples(samples, epoch, gen)
            metrics = {
                "epoch": epoch + 1,
                "reward_mean": rewards.mean().item(),
                "reward_std": rewards.std(unbiased=False).item(),
                **train_info,
                "optimizer_steps": self.optimizer_steps,
                "learning_rate": self.optimizer.param_groups[0]["lr"],
                "seconds": time.monotonic() - t0,
            }
            bar.set_postfix(reward=f"{metrics['reward_mean']:.4g}", kl=f"{metrics['approx_kl']:.2g}")
            if acc.is_main_process:
                self.run_logger.log(epoch + 1, metrics)
                last = epoch + 1 == cfg.num_epochs
                if cfg.sample_grid_freq and ((epoch + 1) % cfg.sample_grid_freq == 0 or last):
                    save_sample_grid(
                        self.output_dir / "samples" / f"epoch-{epoch + 1:04d}.png", epoch + 1, samples["images"],
                        prompts, samples["rewards"], cfg.sample_grid_size, getattr(self.reward, "name", "reward"),
                    )  # fmt: skip
            if (epoch + 1) % cfg.checkpointing_steps == 0 or epoch + 1 == cfg.num_epochs:
                self.save_checkpoint(epoch + 1)
        return self._finish(time.monotonic() - started)

    def sample_epoch(self, epoch: int, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Sample `sample_num_batches_per_epoch` batches of trajectories and score them."""
        cfg, acc = self.config, self.accelerator
        unet = acc.unwrap_model(self.unet)
        batches, all_prompts = defaultdict(list), []
        # the sampling policy is the trained one; merged, its forward passes are cheaper (see the knob)
        with lora_merged(unet) if cfg.sample_merged_lora else nullcontext():
            for _ in range(cfg.sample_num_batches_per_epoch):
                self._sample_batch(gen, unet, epoch, batches, all_prompts)
        return {k: torch.cat(v) for k, v in batches.items()}, all_prompts

    def _sample_batch(
        self, gen: torch.Generator, unet: Any, epoch: int, batches: dict[str, list], all_prompts: list[str]
    ) -> None:
        """One batch of trajectories, scored (and valued, with the baseline), appended to `batches`."""
        cfg, acc = self.config, self.accelerator
        baseline = cfg.advantage_baseline == "predicted_x0" and epoch >= cfg.advantage_baseline_start_epoch
        steps = cfg.sample_num_steps
        ids = torch.randint(len(self.prompts), (cfg.sample_batch_size,), generator=gen)
        prompts = [self.prompts[i] for i in ids.tolist()]
        with acc.autocast():
            traj = sample_with_logprob(
                self.pipe, prompts, cfg.sample_num_steps, cfg.sample_guidance_scale, cfg.sample_eta,
                generator=gen, negative_prompt=cfg.negative_prompt, unet=unet, keep_pred_x0=baseline,
            )  # fmt: skip
        if not (torch.isfinite(traj.latents).all() and torch.isfinite(traj.log_probs).all()):
            raise CanvasError(f"epoch {epoch + 1}: sampling produced non-finite latents; the model diverged")
        try:
            rewards = score_checked(self.reward, traj.images, prompts)
        except CanvasError as exc:
            raise CanvasError(f"epoch {epoch + 1}: {exc}") from exc
        all_prompts += prompts
        if baseline:
            # only the steps this epoch trains ("earliest": the first ones) need a value
            valued = steps if cfg.train_timesteps != "earliest" else cfg.train_timesteps_in(epoch)
            every = cfg.advantage_baseline_every
            values = self._step_values(traj.pred_x0[:, :valued:every], prompts)
            # the steps in between use the latest value: still a function of an earlier state
            values = values.repeat_interleave(every, dim=1)[:, :valued]
            batches["step_values"].append(values.to(acc.device))
        for key, value in {
            "latents": traj.latents[:, :-1],
            "next_latents": traj.latents[:, 1:],
            "log_probs": traj.log_probs,
            "timesteps": traj.timesteps,
            "prompt_embeds": traj.prompt_embeds,
            "negative_prompt_embeds": traj.negative_prompt_embeds,
            "rewards": rewards.to(acc.device),
            "images": traj.images,
        }.items():
            batches[key].append(value)

    @torch.no_grad()
    def _step_values(self, pred_x0: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """(B, T): the reward of each step's predicted clean image (the value estimate of the baseline)."""
        batch, steps = pred_x0.shape[:2]
        with self.accelerator.autocast():
            images = decode_latents(self.pipe, pred_x0.flatten(0, 1))
        repeated = [p for p in prompts for _ in range(steps)]
        return score_checked(self.reward, images, repeated).reshape(batch, steps)

    def _gather_rewards_and_set_advantages(
        self, samples: dict[str, torch.Tensor], prompts: list[str]
    ) -> torch.Tensor:
        """Advantages from every process's rewards (one tracker update, same on all), then this process's slice."""
        acc = self.accelerator
        rewards = acc.gather(samples["rewards"]).cpu()
        all_prompts = [p for part in _gather_objects(acc, prompts) for p in part]
        steps = samples["log_probs"].shape[1]
        if "step_values" in samples:
            values = acc.gather(samples["step_values"]).cpu()
            advantages = step_baseline_advantages(rewards, values)
            # steps without a value are not trained this epoch
            advantages = torch.nn.functional.pad(advantages, (0, steps - values.shape[1]))
        elif self.config.per_prompt_stat_tracking:
            advantages = self.stat_tracker.update(all_prompts, rewards)[:, None].expand(-1, steps)
        else:
            advantages = batch_normalized_advantages(rewards)[:, None].expand(-1, steps)
        # (N, T): one advantage per sample and step (the same for every step without a baseline)
        local = advantages.reshape(acc.num_processes, -1, steps)[acc.process_index]
        samples["advantages"] = local.to(acc.device)
        return rewards

    def train_on_samples(
        self, samples: dict[str, torch.Tensor], epoch: int, gen: torch.Generator
    ) -> dict[str, float]:
        """PPO inner epochs over this epoch's samples; returns mean loss, approx_kl and clipfrac."""
        cfg, acc = self.config, self.accelerator
        keys = _STEP_KEYS + _SAMPLE_KEYS
        total, steps = samples["latents"].shape[:2]
        guidance = cfg.sample_guidance_scale if cfg.train_cfg else 1.0
        info: dict[str, list[float]] = defaultdict(list)
        trained = cfg.train_timesteps_in(epoch)
        per_call = cfg.train_timesteps_per_forward
        calls = [(lo, min(lo + per_call, trained)) for lo in range(0, trained, per_call)]
        # one optimizer step per training batch, whatever the number of trained timesteps this epoch
        self._set_calls_per_step(cfg.train_gradient_accumulation_steps * len(calls))
        self.unet.train()
        for _ in range(cfg.train_num_inner_epochs):
            order = torch.randperm(total, generator=gen).to(acc.device)
            # every trajectory visits its timesteps in its own random order; the first num_train_timesteps are
            # trained ("earliest": the sampler's first steps, in order)
            if cfg.train_timesteps == "earliest":
                t_order = torch.arange(steps).repeat(total, 1).to(acc.device)
            else:
                t_order = torch.stack([torch.randperm(steps, generator=gen) for _ in range(total)]).to(
                    acc.device
                )
            rows = torch.arange(total, device=acc.device)[:, None]
            shuffled = {k: samples[k][order] for k in keys}
            for k in _STEP_KEYS:
                shuffled[k] = shuffled[k][rows, t_order]
            if cfg.train_advantage_top_fraction < 1.0:
                self._train_top_pairs(shuffled, trained, guidance, epoch, info)
                continue
            for start in range(0, total, cfg.train_batch_size):
                batch = {k: v[start : start + cfg.train_batch_size] for k, v in shuffled.items()}
                for lo, hi in calls:
                    # a call's loss is the mean over its steps: weighted so every step counts the same
                    self._train_step(batch, lo, hi, (hi - lo) * len(calls) / trained, guidance, epoch, info)
        return {k: float(np.mean(v)) for k, v in info.items()}

    def _train_step(
        self,
        batch: dict[str, torch.Tensor],
        lo: int,
        hi: int,
        weight: float,
        guidance: float,
        epoch: int,
        info: dict,
    ) -> None:
        """One UNet forward and backward over the batch's trained steps lo..hi-1 (in the order trained)."""
        steps = hi - lo

        def per_step(embeds: torch.Tensor) -> torch.Tensor:
            return embeds.repeat_interleave(steps, dim=0) if steps > 1 else embeds

        # (B, steps, ...) -> (B * steps, ...), a sample's steps together
        pairs = {k: batch[k][:, lo:hi].flatten(0, 1) for k in _STEP_KEYS}
        pairs.update({k: per_step(batch[k]) for k in self._sample_keys()})
        self._train_call(pairs, weight, guidance, epoch, info)

    def _train_top_pairs(
        self, shuffled: dict[str, torch.Tensor], trained: int, guidance: float, epoch: int, info: dict
    ) -> None:
        """Train only the (sample, step) pairs with the largest |advantage| (train_advantage_top_fraction).

        The same optimizer steps and loss weights as training every pair, the others' terms left out: an
        update's loss is the sum over its kept pairs / (train_batch_size x trained steps). Every process
        keeps the same number of pairs, so their backward calls (and gradient all-reduces) pair up.
        """
        cfg = self.config
        total, batch = shuffled["latents"].shape[0], cfg.train_batch_size
        updates = total // batch
        rows, cols, share = top_advantage_pairs(
            shuffled["advantages"][:, :trained], cfg.train_advantage_top_fraction, updates
        )
        info["advantage_share_trained"].append(share)  # metrics.jsonl
        per_update, per_call = len(rows) // updates, batch * cfg.train_timesteps_per_forward
        calls = -(-per_update // per_call)
        self._set_calls_per_step(cfg.train_gradient_accumulation_steps * calls)
        for u in range(updates):
            for lo in range(u * per_update, (u + 1) * per_update, per_call):
                hi = min(lo + per_call, (u + 1) * per_update)
                r, c = rows[lo:hi], cols[lo:hi]
                pairs = {k: shuffled[k][r, c] for k in _STEP_KEYS}
                pairs.update({k: shuffled[k][r] for k in self._sample_keys()})
                self._train_call(pairs, (hi - lo) * calls / (batch * trained), guidance, epoch, info)

    def _set_calls_per_step(self, calls: int) -> None:
        """Backward calls per optimizer step from here on, counted from this call.

        accelerate steps when its run-long call counter is a multiple of the setting; every epoch ends on a
        step, so restarting the count keeps the steps on batch ends when an epoch trains a different number
        of timesteps (train_earliest_epochs) and makes a resumed run count as the uninterrupted one.
        """
        self.accelerator.gradient_accumulation_steps = calls
        self.accelerator.step = 0

    def _sample_keys(self) -> tuple[str, ...]:
        # the negative prompt's embeddings are stacked only where the training pass uses guidance
        return _SAMPLE_KEYS if self.config.train_cfg else _SAMPLE_KEYS[:1]

    def _train_call(
        self, pairs: dict[str, torch.Tensor], weight: float, guidance: float, epoch: int, info: dict
    ) -> None:
        """One UNet forward and backward over stacked (sample, step) pairs; an optimizer step when due."""
        cfg, acc = self.config, self.accelerator
        with acc.accumulate(self.unet):
            with acc.autocast():
                log_prob = transition_log_prob(
                    self.unet, self.pipe.scheduler, pairs["latents"], pairs["next_latents"], pairs["timesteps"],
                    pairs["prompt_embeds"], pairs["negative_prompt_embeds"] if cfg.train_cfg else None, guidance,
                    cfg.sample_eta,
                )  # fmt: skip
            clip = (cfg.train_clip_range, cfg.train_adv_clip_max)
            out = ddpo_clipped_loss(log_prob, pairs["log_probs"], pairs["advantages"], *clip)
            if not torch.isfinite(out.loss):
                raise CanvasError(
                    f"training diverged: non-finite loss at epoch {epoch + 1}, optimizer step "
                    f"{self.optimizer_steps + 1} (timestep {int(pairs['timesteps'][0])}); "
                    "lower learning_rate or check the reward"
                )
            acc.backward(out.loss * weight)  # weight 1.0 (one step a call) is exact in float
            if acc.sync_gradients:
                acc.clip_grad_norm_(self.params, cfg.train_max_grad_norm)
                # the schedule is a function of the step count, so a resume needs no scheduler state
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.learning_rate * cfg.lr_factor(self.optimizer_steps)
                self.optimizer_steps += 1
            self.optimizer.step()
            self.optimizer.zero_grad()
        for name, value in out._asdict().items():
            info[name].append(value.item())

    # ---- outputs ----
    def save_checkpoint(self, epoch: int) -> Path | None:
        """checkpoint-EPOCH with LoRA, optimizer, RNG and the stat tracker (main process)."""
        state = {
            "epoch": epoch,
            "optimizer_steps": self.optimizer_steps,
            "stat_tracker": self.stat_tracker.state_dict(),
        }
        return self._save_checkpoint(epoch, self.unet, self.optimizer, extra_state=state)

    @torch.no_grad()
    def evaluate(self, num_samples: int, seed: int) -> dict[str, float]:
        """Mean reward of fresh samples with and without the LoRA, drawn with the same noise."""
        cfg = self.config
        unet = self.accelerator.unwrap_model(self.unet)
        prompts = [self.prompts[i % len(self.prompts)] for i in range(num_samples)]
        scores: dict[str, list[torch.Tensor]] = {"base": [], "tuned": []}
        for which in scores:
            gen = torch.Generator().manual_seed(seed)
            for start in range(0, num_samples, cfg.sample_batch_size):
                chunk = prompts[start : start + cfg.sample_batch_size]
                with self.accelerator.autocast():
                    if which == "base":
                        with adapters_disabled(unet):
                            traj = self._sample(chunk, gen, unet)
                    else:
                        traj = self._sample(chunk, gen, unet)
                scores[which].append(score_checked(self.reward, traj.images, chunk))
        base, tuned = (torch.cat(v).mean().item() for v in scores.values())
        return {"eval_reward_base": base, "eval_reward_tuned": tuned}

    def _sample(self, prompts: list[str], gen: torch.Generator, unet: Any) -> Any:
        cfg = self.config
        return sample_with_logprob(
            self.pipe, prompts, cfg.sample_num_steps, cfg.sample_guidance_scale, cfg.sample_eta,
            generator=gen, negative_prompt=cfg.negative_prompt, unet=unet,
        )  # fmt: skip

    def _finish(self, seconds: float) -> dict[str, Any]:
        """Save the LoRA (diffusers format), plot the reward curve, write summary.json."""
        acc, cfg = self.accelerator, self.config
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return {}
        lora_file = save_unet_lora(acc.unwrap_model(self.unet), self.output_dir)
        history = read_metrics(self.output_dir)
        summary: dict[str, Any] = {
            "method": "ddpo",
            "pretrained": cfg.pretrained,
            "reward": getattr(self.reward, "name", cfg.reward),
            "epochs": cfg.num_epochs,
            "optimizer_steps": self.optimizer_steps,
            "num_processes": acc.num_processes,
            "reward_mean_first_epoch": history[0]["reward_mean"] if history else None,
            "reward_mean_last_epoch": history[-1]["reward_mean"] if history else None,
            "lora": str(lora_file),
            "seconds_this_session": seconds,
        }
        if cfg.eval_num_samples > 0:
            summary.update(self.evaluate(cfg.eval_num_samples, seed=cfg.seed + 1_000_003))
        if history:
            summary["reward_curve"] = str(plot_reward_curve(history, self.output_dir / "reward_curve.png"))
        self.run_logger.write_summary(summary)
        self.run_logger.close()
        return summary


def _gather_objects(acc: Any, items: list[str]) -> list[list[str]]:
    """Every process's list, in process order (prompts are strings, so not a tensor gather)."""
    if acc.num_processes == 1:
        return [items]
    import torch.distributed as dist

    out: list[Any] = [None] * acc.num_processes
    dist.all_gather_object(out, items)
    return out
