"""`DiffusionDPOTrainer`: Diffusion-DPO (Wallace et al. 2023) with a LoRA on the UNet's attention.

One training step, for a batch of (caption, winner, loser):
1. encode both images to latents and the caption to text embeddings (frozen VAE / text encoders);
2. draw ONE noise tensor and ONE timestep per pair and noise winner and loser with them;
3. policy = UNet with LoRA; reference = the same UNet with the adapters disabled (no second UNet);
4. mse_w, mse_l = per-pair squared error of each model's prediction, averaged over latent elements;
   diff = mse_w - mse_l for policy (`model_diff`) and reference (`ref_diff`);
5. loss = DPO_LOSSES[loss_type](model_diff, ref_diff, beta, target) (pure functions below).

Ties are dropped by default; kept ties train with target 0.5 (never silently as wins). Resuming from a
checkpoint restores LoRA, optimizer and RNG state and recomputes the batch order from the step, so the
loss trajectory continues exactly (bitwise on CPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from canvas.core.errors import CanvasError
from canvas.rlhf.diffusion_model import image_to_tensor, load_diffusion_model
from canvas.rlhf.dpo_config import DiffusionDPOConfig
from canvas.rlhf.launch import create_accelerator
from canvas.rlhf.lora import adapters_disabled
from canvas.rlhf.lora_step_loop import LoraStepLoop
from canvas.rlhf.preferences import PreferenceData, decode_pair, load_preferences

DPOLoss = Callable[[torch.Tensor, torch.Tensor, float, torch.Tensor], torch.Tensor]


def sigmoid_dpo_loss(
    model_diff: torch.Tensor, ref_diff: torch.Tensor, beta: float, target: torch.Tensor
) -> torch.Tensor:
    """Per-pair Diffusion-DPO loss `-logsigmoid(-beta/2 * (model_diff - ref_diff))`.

    `target` is P(winner preferred): 1 gives exactly the paper's loss; 0.5 (a kept tie) weighs both
    orders equally, which pulls the policy towards the reference's margin instead of either image.
    """
    logits = -0.5 * beta * (model_diff - ref_diff)
    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits))


DPO_LOSSES: dict[str, DPOLoss] = {"sigmoid": sigmoid_dpo_loss}


def register_dpo_loss(name: str, loss: DPOLoss) -> None:
    """Add a loss `(model_diff, ref_diff, beta, target) -> per-pair loss` selectable by `loss_type`."""
    DPO_LOSSES[name] = loss


def implicit_accuracy(model_diff: torch.Tensor, ref_diff: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Share of clear pairs where the policy favours the winner more than the reference does; an exact tie
    (model_diff == ref_diff, e.g. at step 1 while LoRA B is still zero) counts half, as the reference
    scripts (diffusers' and Salesforce's) count it."""
    strict = target > 0.5
    if not bool(strict.any()):
        return torch.tensor(math.nan)
    margin = (model_diff - ref_diff)[strict]
    return ((margin < 0).float() + 0.5 * (margin == 0).float()).mean()


class DiffusionDPOTrainer(LoraStepLoop):
    """Example:
    >>> DiffusionDPOTrainer(DiffusionDPOConfig(preferences="prefs.parquet", output_dir="dpo")).train()
    >>> pipe = load_pipeline("tiny"); pipe.load_lora_weights("dpo")
    """

    def __init__(self, config: DiffusionDPOConfig) -> None:
        from accelerate.utils import set_seed
        from diffusers import DDPMScheduler

        self.config = cfg = config
        if cfg.loss_type not in DPO_LOSSES:
            raise CanvasError(
                f"unknown loss_type {cfg.loss_type!r}; registered: {', '.join(sorted(DPO_LOSSES))}"
            )
        self.loss_fn = DPO_LOSSES[cfg.loss_type]
        self.accelerator = acc = create_accelerator(
            mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.gradient_accumulation_steps
        )
        set_seed(cfg.seed)

        # -- data: validated before any model loads ------------------------------------------------------
        data = load_preferences(cfg.preferences, split=cfg.split)
        self.num_ties = data.num_ties
        if cfg.drop_ties:
            data = data.without_ties()
        if len(data) == 0:
            raise CanvasError(f"{cfg.preferences}: no pairs left to train on ({self.num_ties} ties dropped)")
        self.train_data, self.heldout_data = data.split(cfg.heldout_fraction, cfg.seed)
        self._claim_output_dir()

        # -- models: frozen pipeline parts in the mixed-precision dtype, LoRA in fp32 ---------------------
        self.model = load_diffusion_model(cfg.pretrained, acc.device, acc.mixed_precision, cfg.resolution)
        self.pipe, self.weight_dtype, self.resolution = (
            self.model.pipe,
            self.model.weight_dtype,
            self.model.resolution,
        )
        self.noise_scheduler = DDPMScheduler.from_config(self.pipe.scheduler.config)
        self._prepare_lora_training(self.pipe.unet)

    # -- data -------------------------------------------------------------------------------------------
    def _batch(self, data: PreferenceData, indices: list[int]) -> dict[str, Any]:
        pairs = [data[i] for i in indices]
        images = [decode_pair(data, p) for p in pairs]
        return {
            "captions": [p.caption for p in pairs],
            "winner": torch.stack([image_to_tensor(w, self.resolution) for w, _ in images]),
            "loser": torch.stack([image_to_tensor(lo, self.resolution) for _, lo in images]),
            "target": torch.tensor([p.target for p in pairs], dtype=torch.float32),
        }

    # -- the DPO terms ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _encode(self, batch: dict[str, Any], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        dev, vae = self.accelerator.device, self.pipe.vae
        pixels = torch.cat([batch["winner"], batch["loser"]]).to(dev) * 2 - 1
        latents = vae.encode(pixels).latent_dist.sample(generator) * vae.config.scaling_factor
        out: dict[str, torch.Tensor] = {"latents": latents.to(self.weight_dtype)}
        embeds, pooled = self.model.encode_prompts(batch["captions"])
        if pooled is not None:  # SDXL: winner and loser share the caption's conditioning
            out["added"] = self.model.added_cond(pooled.repeat(2, 1))
        out["embeds"] = embeds.to(self.weight_dtype).repeat(2, 1, 1)
        return out

    def _diffs(
        self, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """model_diff / ref_diff (and the mse terms) for one batch; differentiable in the LoRA."""
        enc = self._encode(batch, generator)
        latents = enc["latents"]
        half = latents.shape[0] // 2
        dev = latents.device
        # One noise and one timestep per pair, shared by winner and loser.
        noise = torch.randn(
            latents[:half].shape, generator=generator, device=dev, dtype=latents.dtype
        ).repeat(2, 1, 1, 1)
        t = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (half,), generator=generator, device=dev
        ).repeat(2)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, t)
        else:
            target = noise

        def mse(unet: Any) -> torch.Tensor:
            with self.accelerator.autocast():
                pred = unet(
                    noisy, t, encoder_hidden_states=enc["embeds"], added_cond_kwargs=enc.get("added")
                ).sample
            return (pred.float() - target.float()).pow(2).mean(dim=(1, 2, 3))

        model_mse = mse(self.unet)
        with torch.no_grad(), adapters_disabled(self.accelerator.unwrap_model(self.unet)):
            ref_mse = mse(self.accelerator.unwrap_model(self.unet))
        return {
            "model_diff": model_mse[:half] - model_mse[half:],
            "ref_diff": ref_mse[:half] - ref_mse[half:],
            "mse_w": model_mse[:half],
            "mse_l": model_mse[half:],
        }

    # -- evaluation -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, data: PreferenceData | None = None) -> dict[str, float]:
        """Implicit accuracy and loss on held-out pairs, with a fixed noise seed (global RNG untouched)."""
        data = self.heldout_data if data is None else data
        if len(data) == 0:
            return {}
        gen = torch.Generator(self.accelerator.device).manual_seed(self.config.seed + 1)
        accs, losses, weights = [], [], []
        b = self.config.train_batch_size
        for start in range(0, len(data), b):
            batch = self._batch(data, list(range(start, min(start + b, len(data)))))
            for _ in range(self.config.eval_noise_draws):
                d = self._diffs(batch, gen)
                target = batch["target"].to(d["model_diff"].device)
                losses.append(
                    self.loss_fn(d["model_diff"], d["ref_diff"], self.config.beta, target).sum().item()
                )
                n_strict = int((target > 0.5).sum())
                if n_strict:  # the training metric's rule (an exact tie counts half), weighted by pairs
                    accs.append(implicit_accuracy(d["model_diff"], d["ref_diff"], target).item() * n_strict)
                weights.append((n_strict, len(target)))
        n_strict = sum(w[0] for w in weights)
        return {
            "implicit_acc": sum(accs) / n_strict if n_strict else math.nan,
            "loss": sum(losses) / sum(w[1] for w in weights),
        }

    # -- training -------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        cfg, acc = self.config, self.accelerator
        main = acc.is_main_process
        logger = self._open_step_logger()
        self.unet.train()
        last: dict[str, float] = {}
        bar = tqdm(total=cfg.max_steps, initial=self.start_step, desc="dpo", unit="step", disable=not main)
        for step in range(self.start_step, cfg.max_steps):
            self._set_lr(step)
            sums: dict[str, float] = {}
            for micro in range(cfg.gradient_accumulation_steps):
                batch = self._batch(
                    self.train_data, self._indices(step * cfg.gradient_accumulation_steps + micro)
                )
                with acc.accumulate(self.unet):
                    d = self._diffs(batch)
                    target = batch["target"].to(d["model_diff"].device)
                    loss = self.loss_fn(d["model_diff"], d["ref_diff"], cfg.beta, target).mean()
                    acc.backward(loss)
                    grad_norm = None
                    if acc.sync_gradients and cfg.max_grad_norm > 0:
                        grad_norm = acc.clip_grad_norm_(self.params, cfg.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                terms = {
                    "loss": loss.detach(),
                    "implicit_acc": implicit_accuracy(d["model_diff"].detach(), d["ref_diff"], target),
                    **{k: v.detach().mean() for k, v in d.items()},
                }
                for k, v in terms.items():
                    sums[k] = (
                        sums.get(k, 0.0)
                        + float(acc.reduce(v.to(acc.device), "mean")) / cfg.gradient_accumulation_steps
                    )
            done = step + 1
            last = {**sums, "lr": self._lr(step)}
            if grad_norm is not None:
                last["grad_norm"] = float(grad_norm)
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}", acc=f"{last['implicit_acc']:.2f}")
            self._end_step(done, last, logger)
        bar.close()
        return self._finish(
            logger,
            last,
            lambda heldout: {
                "heldout_implicit_acc": heldout.get("implicit_acc"),
                "heldout_loss": heldout.get("loss"),
                "train_pairs": len(self.train_data),
                "heldout_pairs": len(self.heldout_data),
                "ties_in_source": self.num_ties,
                "ties_dropped": self.num_ties if cfg.drop_ties else 0,
            },
        )
