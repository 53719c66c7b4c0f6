"""`SFTTrainer`: supervised LoRA fine-tuning of a diffusion UNet on image-caption rows.

One training step, for a batch of (caption, image):
1. latent = a sample of the frozen VAE's posterior for the image; text embedding from the frozen text
   encoder (both computed once for the whole data set: they never change);
2. draw noise and a timestep per image, noise the latent (DDPM forward process);
3. loss = `noise_prediction_loss`: MSE between the UNet's prediction and the noise (or v), optionally
   Min-SNR-gamma weighted (a pure function below).

Rows come from a curated set (`DIR/curated/*.parquet`), a subset (`DIR/subset.parquet`) or any Parquet
with caption and image-bytes columns. Rows whose image cannot be decoded are skipped and counted
(`rows_rejected` in summary.json). Resuming restores LoRA, optimizer and RNG state and recomputes the
batch order from the step, so the loss trajectory continues exactly (bitwise on CPU). The LoRA is saved
in the diffusers format: stock `pipe.load_lora_weights(OUTPUT)` loads it, and `canvas train dpo/ddpo
--init_lora OUTPUT` starts from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from canvas.core.errors import CanvasError
from canvas.rlhf.diffusion_model import image_to_tensor, load_diffusion_model
from canvas.rlhf.launch import create_accelerator
from canvas.rlhf.lora import adapters_disabled
from canvas.rlhf.lora_step_loop import LoraStepLoop
from canvas.rlhf.sft_config import SFTConfig

log = logging.getLogger(__name__)


# -- the objective (pure) ------------------------------------------------------------------------------


def min_snr_weights(snr: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-gamma loss weights per sample (Hang et al. 2023)."""
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    return clipped / (snr + 1) if prediction_type == "v_prediction" else clipped / snr


def noise_prediction_loss(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample MSE over latent elements, times optional per-sample weights, averaged over the batch."""
    per_sample = (pred.float() - target.float()).pow(2).mean(dim=tuple(range(1, pred.ndim)))
    return (per_sample * weights).mean() if weights is not None else per_sample.mean()


# -- data --------------------------------------------------------------------------------------------


@dataclass
class ImageCaptionData:
    """Decoded rows: images `(n, 3, R, R)` in [0, 1] and captions; `rejected` counts undecodable rows."""

    images: torch.Tensor
    captions: list[str]
    rejected: int = 0

    def __len__(self) -> int:
        return len(self.captions)

    def split(self, fraction: float, seed: int) -> tuple[ImageCaptionData, ImageCaptionData]:
        n = len(self)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        held = max(1, round(n * fraction)) if fraction > 0 and n > 1 else 0
        pick = lambda idx: ImageCaptionData(self.images[idx], [self.captions[i] for i in idx])  # noqa: E731
        return pick(sorted(order[held:])), pick(sorted(order[:held]))


def parquet_files(data: str | Path) -> list[Path]:
    """A Parquet file, a folder of them, or a curated folder (its `curated/` part files)."""
    path = Path(data)
    if path.is_file():
        return [path]
    if path.is_dir():
        for folder in (path / "curated", path):
            files = sorted(folder.glob("*.parquet"))
            if files:
                return files
    raise CanvasError(f"no Parquet data at {data!r} (give a .parquet file, a subset or a curated folder)")


def decode_image(data: bytes, resolution: int) -> torch.Tensor:
    """Decode encoded image bytes and `image_to_tensor` them: `(3, R, R)` float in [0, 1]."""
    from canvas.core.images import open_lazily

    with open_lazily(data) as img:  # ValueError above the pixel limit: that row is skipped
        img = img.convert("RGB")
    return image_to_tensor(img, resolution)


def check_columns(
    data: str | Path, caption_column: str = "caption", image_column: str = "image"
) -> list[Path]:
    """The data's Parquet files, after checking each has the two columns (cheap: schemas only)."""
    import pyarrow.parquet as pq

    files = parquet_files(data)
    for path in files:
        names = pq.read_schema(path).names
        missing = [c for c in (caption_column, image_column) if c not in names]
        if missing:
            raise CanvasError(f"{path} has no column(s) {missing}; columns: {names}")
    return files


def load_image_caption_rows(
    data: str | Path, resolution: int, caption_column: str = "caption", image_column: str = "image"
) -> ImageCaptionData:
    import pyarrow.parquet as pq

    images, captions, rejected = [], [], 0
    for path in check_columns(data, caption_column, image_column):
        table = pq.read_table(path, columns=[caption_column, image_column])
        for caption, blob in zip(
            table[caption_column].to_pylist(), table[image_column].to_pylist(), strict=True
        ):
            try:
                images.append(decode_image(blob, resolution))
            except (OSError, ValueError, TypeError) as exc:
                rejected += 1
                log.warning("skipping a row of %s: undecodable image (%s)", path.name, exc)
                continue
            captions.append(caption or "")
    if not captions:
        raise CanvasError(f"{data}: no decodable image-caption rows to train on ({rejected} rejected)")
    return ImageCaptionData(torch.stack(images), captions, rejected)


# -- the trainer ---------------------------------------------------------------------------------------


class SFTTrainer(LoraStepLoop):
    """Example:
    >>> SFTTrainer(SFTConfig(data="subset/subset.parquet", output_dir="sft")).train()
    >>> pipe = load_pipeline("tiny"); pipe.load_lora_weights("sft")
    """

    def __init__(self, config: SFTConfig) -> None:
        from accelerate.utils import set_seed
        from diffusers import DDPMScheduler

        self.config = cfg = config
        self.accelerator = acc = create_accelerator(
            mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.gradient_accumulation_steps
        )
        set_seed(cfg.seed)

        check_columns(cfg.data, cfg.caption_column, cfg.image_column)  # fail before any model loads
        self._claim_output_dir()
        # -- models: frozen VAE / text encoders / UNet in the mixed-precision dtype, LoRA in fp32 ----------
        self.model = load_diffusion_model(cfg.pretrained, acc.device, acc.mixed_precision, cfg.resolution)
        self.pipe, self.weight_dtype, self.resolution = (
            self.model.pipe,
            self.model.weight_dtype,
            self.model.resolution,
        )

        # -- data: decoded and encoded once (the encoders are frozen) ---------------------------------------
        data = load_image_caption_rows(cfg.data, self.resolution, cfg.caption_column, cfg.image_column)
        self.rows_rejected = data.rejected
        self.train_data, self.heldout_data = data.split(cfg.heldout_fraction, cfg.seed)
        self.train_enc = self._encode(self.train_data)
        self.heldout_enc = self._encode(self.heldout_data) if len(self.heldout_data) else None
        self.noise_scheduler = DDPMScheduler.from_config(self.pipe.scheduler.config)
        self._prepare_lora_training(self.pipe.unet)

    @torch.no_grad()
    def _encode(self, data: ImageCaptionData, batch: int = 32) -> dict[str, Any]:
        """VAE posterior (mean, std) per image and text conditioning per caption."""
        dev, vae = self.accelerator.device, self.pipe.vae
        means, stds, embeds, pooled = [], [], [], []
        for lo in range(0, len(data), batch):
            dist = vae.encode(data.images[lo : lo + batch].to(dev) * 2 - 1).latent_dist
            means.append(dist.mean * vae.config.scaling_factor)
            stds.append(dist.std * vae.config.scaling_factor)
            e, p = self.model.encode_prompts(data.captions[lo : lo + batch])
            if p is not None:  # SDXL
                pooled.append(p.to(self.weight_dtype))
            embeds.append(e.to(self.weight_dtype))
        out: dict[str, Any] = {"mean": torch.cat(means), "std": torch.cat(stds), "embeds": torch.cat(embeds)}
        if pooled:
            out["pooled"] = torch.cat(pooled)
        return out

    # -- loss -----------------------------------------------------------------------------------------
    def _loss(
        self,
        enc: dict[str, Any],
        idx: list[int],
        generator: torch.Generator | None = None,
        flip: bool = False,
    ) -> torch.Tensor:
        """Noise-prediction loss on rows `idx` of encoded data; fresh latent sample, noise and timesteps."""
        cfg, sched = self.config, self.noise_scheduler
        dev = self.accelerator.device
        mean, std = enc["mean"][idx], enc["std"][idx]
        latents = mean + std * torch.randn(mean.shape, generator=generator, device=dev)
        if flip:
            mask = torch.rand(len(idx), generator=generator, device=dev) < 0.5
            latents = torch.where(mask[:, None, None, None], latents.flip(-1), latents)
        noise = torch.randn(latents.shape, generator=generator, device=dev)
        if cfg.noise_offset:
            noise = noise + cfg.noise_offset * torch.randn(
                (len(idx), latents.shape[1], 1, 1), generator=generator, device=dev
            )
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=generator, device=dev)
        noisy = sched.add_noise(latents, noise, t).to(self.weight_dtype)
        target = (
            sched.get_velocity(latents, noise, t) if sched.config.prediction_type == "v_prediction" else noise
        )
        added = self.model.added_cond(enc["pooled"][idx] if "pooled" in enc else None)
        with self.accelerator.autocast():
            pred = self.unet(
                noisy, t, encoder_hidden_states=enc["embeds"][idx], added_cond_kwargs=added
            ).sample
        weights = None
        if cfg.snr_gamma is not None:
            from diffusers.training_utils import compute_snr

            weights = min_snr_weights(
                compute_snr(sched, t).float(), cfg.snr_gamma, sched.config.prediction_type
            )
        return noise_prediction_loss(pred, target, weights)

    # -- evaluation -----------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out denoising loss (plain MSE) with a fixed noise seed, so runs and steps compare."""
        if self.heldout_enc is None:
            return {}
        gen = torch.Generator(self.accelerator.device).manual_seed(self.config.seed + 1)
        n, b = len(self.heldout_data), self.config.train_batch_size
        total = 0.0
        gamma, self.config.snr_gamma = self.config.snr_gamma, None  # report the unweighted objective
        try:
            for _ in range(self.config.eval_noise_draws):
                for lo in range(0, n, b):
                    idx = list(range(lo, min(lo + b, n)))
                    total += self._loss(self.heldout_enc, idx, gen).item() * len(idx)
        finally:
            self.config.snr_gamma = gamma
        return {"loss": total / (n * self.config.eval_noise_draws)}

    # -- training -------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        cfg, acc = self.config, self.accelerator
        main = acc.is_main_process
        logger = self._open_step_logger()
        # The base model's held-out loss: the bar the fine-tuned LoRA has to clear (zero LoRA = base).
        with adapters_disabled(acc.unwrap_model(self.unet)):
            base = self.evaluate()
        self.unet.train()
        last: dict[str, float] = {}
        bar = tqdm(total=cfg.max_steps, initial=self.start_step, desc="sft", unit="step", disable=not main)
        for step in range(self.start_step, cfg.max_steps):
            self._set_lr(step)
            loss_sum, grad_norm = 0.0, None
            for micro in range(cfg.gradient_accumulation_steps):
                idx = self._indices(step * cfg.gradient_accumulation_steps + micro)
                with acc.accumulate(self.unet):
                    loss = self._loss(self.train_enc, idx, flip=cfg.random_flip)
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.max_grad_norm > 0:
                        grad_norm = acc.clip_grad_norm_(self.params, cfg.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                loss_sum += float(acc.reduce(loss.detach(), "mean")) / cfg.gradient_accumulation_steps
            done = step + 1
            last = {"loss": loss_sum, "lr": self._lr(step)}
            if grad_norm is not None:
                last["grad_norm"] = float(grad_norm)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.4f}")
            self._end_step(done, last, logger)
        bar.close()
        return self._finish(
            logger,
            last,
            lambda heldout: {
                "heldout_loss": heldout.get("loss"),
                "base_heldout_loss": base.get("loss"),
                "train_rows": len(self.train_data),
                "heldout_rows": len(self.heldout_data),
                "rows_rejected": self.rows_rejected,
            },
        )
