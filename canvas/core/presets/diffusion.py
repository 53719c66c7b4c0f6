"""Diffusion pipelines through diffusers' own `from_pretrained`, with a tiny offline SD-1.5-style preset.

The tiny preset is a real `StableDiffusionPipeline` folder (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, a CLIPTokenizer built from open_clip's bundled BPE vocabulary, DDIMScheduler with
SD 1.5's betas), built with a fixed seed and written with `save_pretrained`. It loads through
`DiffusionPipeline.from_pretrained(folder)`, the call that loads a real SD 1.5 / SDXL folder or hub id.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from canvas.core.atomic import replace_path
from canvas.core.presets.registry import SEED

# Number of BPE merges open_clip (and OpenAI CLIP) use: 49152 - 256 - 2.
NUM_MERGES = 48894


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable-character table (the base of the BPE vocabulary)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def write_clip_tokenizer_files(out_dir: Path) -> tuple[Path, Path]:
    """Write `vocab.json` + `merges.txt` equal to open_clip's tokenizer (ids match open_clip's)."""
    from open_clip.tokenizer import default_bpe

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = lines[1 : 1 + NUM_MERGES]
    base = list(_bytes_to_unicode().values())
    vocab = base + [b + "</w>" for b in base] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = out_dir / "vocab.json", out_dir / "merges.txt"
    vocab_file.write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def tiny_clip_tokenizer(bpe_dir: Path) -> Any:
    """A `CLIPTokenizer` equal to open_clip's, from its bundled BPE files written to `bpe_dir`."""
    from transformers import CLIPTokenizer

    vocab_file, merges_file = write_clip_tokenizer_files(bpe_dir)
    return CLIPTokenizer(str(vocab_file), str(merges_file), pad_token="<|endoftext|>", model_max_length=77)


def tiny_vae() -> Any:
    """The 2-block AutoencoderKL of the tiny presets (32x32 images <-> 16x16 latents); uses torch's RNG."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )


def sd15_ddim_scheduler() -> Any:
    """DDIM with SD 1.5's betas (also SDXL's)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def save_atomically(pipe: Any, tmp: Path, out_dir: Path) -> Path:
    """`save_pretrained` into `tmp` (holding the `_bpe` scratch folder), then rename to `out_dir`.

    A killed build never leaves a folder at `out_dir` that looks complete.
    """
    pipe.save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(tmp / "_bpe", ignore_errors=True)
    return replace_path(tmp, out_dir)


def build_tiny_sd(out_dir: Path, seed: int = SEED, unet_norm_groups: int = 32) -> Path:
    """Build the tiny SD-1.5-style pipeline with a fixed seed and `save_pretrained` it to `out_dir`.

    `unet_norm_groups`: the UNet's GroupNorm groups (diffusers' default 32; see `canvas.core.presets.photo`).
    """
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = tiny_clip_tokenizer(tmp / "_bpe")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=16,  # latent 16x16 -> 32x32 images with the 2-block VAE
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=unet_norm_groups,
        )
        vae = tiny_vae()
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=4,
                num_hidden_layers=2,
                max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    scheduler = sd15_ddim_scheduler()
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return save_atomically(pipe, tmp, out_dir)
