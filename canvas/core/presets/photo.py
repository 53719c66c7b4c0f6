"""`tiny-photo`: the tiny SD-1.5-style preset, pretrained on crops of the sample data's real photos.

The random `tiny` preset exercises every code path but has nothing to learn from: its random VAE decoder
barely responds to the latents (every sample compresses to about the same JPEG size) and its random UNet
cannot denoise. A few hundred steps of autoencoding (VAE) and of the plain noise-prediction loss (UNet) on
32x32 crops of real photos give a base model whose images depend on its latents, as pretraining does
for real models; fine-tuning methods (SFT, DPO, DDPO) then have something to shift.

Colour needs two things the plain recipe lacked (measured: SFT on red squares could not make samples
redder). The pretraining data also holds colour-shifted copies of the crops and plain colour squares, as
a real model's data holds every palette; without them the VAE decodes a red-tinted photo no redder than
the plain one. And the UNet's GroupNorm has 8 groups, not diffusers' default 32: with 32 channels, 32
groups normalise each channel alone, erasing its spatial mean, so the UNet could not read or set the
global colour of a latent (SD's 320 channels make 10 per group).

Seeded and deterministic, written with `save_pretrained` and loaded with `DiffusionPipeline.from_pretrained`
like any folder.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from canvas.core.presets.diffusion import build_tiny_sd, save_atomically
from canvas.core.presets.registry import SEED

TINY_PHOTO = "tiny-photo"
IMAGE_SIZE = 32
VAE_STEPS = 250
UNET_STEPS = 250
NUM_CROPS = 256
UNET_NORM_GROUPS = 8
# Float sums split differently with the thread count, and the fine-tuning tests' outcomes depend on the
# exact weights: the build always uses this many torch threads, whatever the caller set.
BUILD_THREADS = 2
PLAIN_COLOUR_FRACTION = 0.2  # plain colour squares added, as a fraction of the crops
PLAIN_COLOUR_CAPTION = "a plain colour square"
# Offset noise (Guttenberg 2023; diffusers' `--noise_offset`): the tiny 16x16 latent's noise has a
# per-channel mean of std 1/16, which a UNet trained without offsets reads as the image's colour.
NOISE_OFFSET = 0.1


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on `n` torch threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def photo_crops(
    n: int, seed: int, size: int = IMAGE_SIZE, names: tuple[str, ...] | None = None
) -> tuple[torch.Tensor, list[str]]:
    """`n` random square crops of the sample photos, resized to `size`: pixels (n, 3, size, size) in [-1, 1]
    and each crop's caption (its photo's). `names` picks photos by sample-data name (default: all)."""
    from canvas.core.sample_data import PHOTOS

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


def with_colour_variants(
    pixels: torch.Tensor, captions: list[str], seed: int
) -> tuple[torch.Tensor, list[str]]:
    """`pixels` (in [-1, 1]) plus a colour-shifted copy of each (per-channel gain 0.5-1.5 and offset
    up to +-0.4, pixels in [0, 1]) plus `PLAIN_COLOUR_FRACTION` as many squares of one random colour each."""
    gen = torch.Generator().manual_seed(seed)
    n, _, h, w = pixels.shape
    gain = torch.empty(n, 3, 1, 1).uniform_(0.5, 1.5, generator=gen)
    offset = torch.empty(n, 3, 1, 1).uniform_(-0.4, 0.4, generator=gen)
    shifted = ((pixels + 1) / 2 * gain + offset).clamp(0, 1) * 2 - 1
    n_plain = int(n * PLAIN_COLOUR_FRACTION)
    plain = (torch.rand(n_plain, 3, 1, 1, generator=gen) * 2 - 1).expand(-1, -1, h, w)
    return torch.cat([pixels, shifted, plain]), captions + captions + [PLAIN_COLOUR_CAPTION] * n_plain


def pretrain_on_pixels(
    pipe: Any,
    pixels: torch.Tensor,
    captions: list[str],
    seed: int,
    vae_steps: int,
    unet_steps: int,
    unet_batch: int = 16,
    calibrate_scaling: bool = True,
    noise_offset: float = 0.0,
) -> None:
    """Pretrain a tiny pipeline in place: `vae_steps` of autoencoding on `pixels` (in [-1, 1]), then
    `unet_steps` of the plain noise-prediction loss on their latents and captions. Seeded; the global RNG
    is left as it was. `calibrate_scaling` sets the VAE's scaling factor by SD's rule first.
    `noise_offset` adds a per-(image, channel) constant to the noise, as diffusers' training scripts'
    `--noise_offset`."""
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
            if noise_offset:
                noise = noise + noise_offset * torch.randn(unet_batch, noise.shape[1], 1, 1)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (unet_batch,))
            noisy = scheduler.add_noise(latents[idx], noise, t)
            loss = (unet(noisy, t, encoder_hidden_states=text[idx]).sample - noise).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()


def build_tiny_photo_sd(
    out_dir: Path, seed: int = SEED, vae_steps: int = VAE_STEPS, unet_steps: int = UNET_STEPS
) -> Path:
    """Build the tiny preset (8 UNet norm groups), pretrain its VAE then its UNet on photo crops and their
    colour variants, `save_pretrained` to `out_dir`."""
    from diffusers import StableDiffusionPipeline

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = StableDiffusionPipeline.from_pretrained(
        build_tiny_sd(tmp / "_base", seed, unet_norm_groups=UNET_NORM_GROUPS)
    )
    pixels, captions = with_colour_variants(*photo_crops(NUM_CROPS, seed), seed=seed + 1)
    with torch_threads(BUILD_THREADS):
        pretrain_on_pixels(pipe, pixels, captions, seed, vae_steps, unet_steps, noise_offset=NOISE_OFFSET)
    # Atomic: a killed build never leaves a folder that looks complete.
    save_atomically(pipe, tmp / "pipeline", out_dir)
    shutil.rmtree(tmp)
    return out_dir
