"""`tiny-photo`: the tiny SD-1.5-style preset, briefly pretrained on crops of the sample data's real photos.

The random `tiny` preset exercises every code path but has nothing to learn from: its random VAE decoder
barely responds to the latents (every sample compresses to about the same JPEG size) and its random UNet
cannot denoise. A few hundred steps of autoencoding (VAE) and of the plain noise-prediction loss (UNet) on
32x32 crops of real photos give a base model whose images depend on its latents, as pretraining does
for real models; fine-tuning methods (DDPO, DPO) then have preferences to shift. Seeded and deterministic,
written with `save_pretrained` and loaded with `DiffusionPipeline.from_pretrained` like any folder.
"""

from __future__ import annotations

import io
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from canvas.presets.diffusion import SEED, build_tiny_sd

TINY_PHOTO = "tiny-photo"
IMAGE_SIZE = 32
VAE_STEPS = 40
UNET_STEPS = 60
NUM_CROPS = 256


def photo_crops(
    n: int, seed: int, size: int = IMAGE_SIZE, names: tuple[str, ...] | None = None
) -> tuple[torch.Tensor, list[str]]:
    """`n` random square crops of the sample photos, resized to `size`: pixels (n, 3, size, size) in [-1, 1]
    and each crop's caption (its photo's). `names` picks photos by sample-data name (default: all)."""
    from canvas.sample_data import PHOTOS

    photos = [
        (Image.open(io.BytesIO(resources.files(pkg).joinpath(path).read_bytes())).convert("RGB"), caption)
        for pkg, path, name, caption in PHOTOS
        if names is None or name in names
    ]
    rng = np.random.default_rng(seed)
    pixels, captions = [], []
    for _ in range(n):
        photo, caption = photos[int(rng.integers(len(photos)))]
        # A whole-photo resize or a zoomed-in crop: coarse and fine texture both.
        side = int(min(photo.size) * rng.uniform(0.25, 1.0))
        left = int(rng.integers(0, photo.width - side + 1))
        top = int(rng.integers(0, photo.height - side + 1))
        crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        pixels.append(torch.from_numpy(np.asarray(crop, np.float32) / 127.5 - 1).permute(2, 0, 1))
        captions.append(caption)
    return torch.stack(pixels), captions


def pretrain_on_pixels(
    pipe: Any,
    pixels: torch.Tensor,
    captions: list[str],
    seed: int,
    vae_steps: int,
    unet_steps: int,
    unet_batch: int = 16,
    calibrate_scaling: bool = True,
) -> None:
    """Pretrain a tiny pipeline in place: `vae_steps` of autoencoding on `pixels` (in [-1, 1]), then
    `unet_steps` of the plain noise-prediction loss on their latents and captions. Seeded; the global RNG
    is left as it was. `calibrate_scaling` sets the VAE's scaling factor by SD's rule first."""
    from diffusers import DDPMScheduler

    vae, unet = pipe.vae, pipe.unet
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
        for _ in range(vae_steps):
            batch = pixels[torch.randint(0, len(pixels), (16,))]
            posterior = vae.encode(batch).latent_dist
            recon = vae.decode(posterior.sample()).sample
            # A near-zero KL weight, as SD's VAE: latents stay close to a unit-scale Gaussian's.
            loss = (recon - batch).pow(2).mean() + 1e-6 * posterior.kl().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.mean
            if calibrate_scaling:
                # SD's rule for its scaling factor: the UNet sees unit-variance latents.
                vae.register_to_config(scaling_factor=round(1.0 / latents.std().item(), 5))
            latents = latents * vae.config.scaling_factor
            text = pipe.encode_prompt(captions, "cpu", 1, False)[0]
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-3)
        for _ in range(unet_steps):
            idx = torch.randint(0, len(latents), (unet_batch,))
            noise = torch.randn_like(latents[idx])
            t = torch.randint(0, scheduler.config.num_train_timesteps, (unet_batch,))
            noisy = scheduler.add_noise(latents[idx], noise, t)
            loss = (unet(noisy, t, encoder_hidden_states=text[idx]).sample - noise).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()


def build_tiny_photo_sd(
    out_dir: Path, seed: int = SEED, vae_steps: int = VAE_STEPS, unet_steps: int = UNET_STEPS
) -> Path:
    """Build the tiny preset, pretrain its VAE then its UNet on photo crops, `save_pretrained` to `out_dir`."""
    from diffusers import StableDiffusionPipeline

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = StableDiffusionPipeline.from_pretrained(build_tiny_sd(tmp / "_base", seed))
    pixels, captions = photo_crops(NUM_CROPS, seed)
    pretrain_on_pixels(pipe, pixels, captions, seed, vae_steps, unet_steps)
    pipe.save_pretrained(tmp / "pipeline", safe_serialization=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    (tmp / "pipeline").replace(out_dir)  # atomic: a killed build never leaves a folder that looks complete
    shutil.rmtree(tmp)
    return out_dir
