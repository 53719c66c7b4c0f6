"""The `tiny-photo` preset: loads like any diffusers folder, is deterministic, its VAE learned photos and colour."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from canvas.core.presets.loading import load_pipeline, resolve_pretrained
from canvas.core.presets.photo import build_tiny_photo_sd, photo_crops


@pytest.mark.slow
def test_tiny_photo_loads_and_its_vae_reconstructs_held_out_crops_and_their_colour(
    tiny_presets, redness
) -> None:
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    path = Path(resolve_pretrained("tiny-photo"))
    assert path.name == "sd15-photo" and not path.with_name("sd15-photo.tmp").exists()
    photo = DiffusionPipeline.from_pretrained(path)
    assert isinstance(photo, StableDiffusionPipeline)
    random_vae = load_pipeline("tiny").vae
    # Crops drawn with a seed the build never uses: not the training crops.
    pixels, _ = photo_crops(32, seed=12345)
    errors = {}
    with torch.no_grad():
        for name, vae in (("photo", photo.vae), ("random", random_vae)):
            recon = vae.decode(vae.encode(pixels).latent_dist.mean).sample
            errors[name] = (recon - pixels).pow(2).mean().item()
    # Measured: photo 0.023, random 0.41 (mean squared error in [-1, 1] pixels).
    assert errors["photo"] < errors["random"] / 8, errors
    # Colour survives the round trip (the pretraining's colour-shifted copies): a red-tinted crop decodes
    # redder than the plain one. Measured redness (mean R - (G+B)/2 in [0, 1]): tinted 0.301 vs plain
    # 0.113 (inputs 0.315 / 0.108); the random VAE gives 0.173 for both.
    tinted = (pixels + 1) * torch.tensor([1.0, 0.4, 0.4]).view(1, 3, 1, 1) - 1

    def round_trip_redness(x: torch.Tensor) -> float:
        with torch.no_grad():
            rgb = (photo.vae.decode(photo.vae.encode(x).latent_dist.mean).sample + 1) / 2
        return redness(rgb.permute(0, 2, 3, 1).numpy())

    measured = {"tinted": round_trip_redness(tinted), "plain": round_trip_redness(pixels)}
    assert measured["tinted"] > measured["plain"] + 0.12, measured
    # SD's scaling rule: latents the UNet sees have about unit variance.
    with torch.no_grad():
        latents = photo.vae.encode(pixels).latent_dist.mean * photo.vae.config.scaling_factor
    assert 0.7 < latents.std().item() < 1.4


def test_build_is_deterministic_whatever_the_callers_thread_count(tmp_path: Path) -> None:
    # A few steps suffice to show the build repeats bit for bit (same crops, same noise, same updates), also
    # when the caller runs torch on one thread (as `canvas demo` does on a loaded machine).
    threads = torch.get_num_threads()
    a = build_tiny_photo_sd(tmp_path / "a", seed=0, vae_steps=2, unet_steps=2)
    torch.set_num_threads(1)
    try:
        b = build_tiny_photo_sd(tmp_path / "b", seed=0, vae_steps=2, unet_steps=2)
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    assert not (tmp_path / "a.tmp").exists()
    for part in ("unet", "vae"):
        wa = load_file(a / part / "diffusion_pytorch_model.safetensors")
        wb = load_file(b / part / "diffusion_pytorch_model.safetensors")
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), part
