"""A tiny SDXL-style pipeline preset (`tiny-sdxl`): two text encoders, `text_time` conditioning.

Same idea as the tiny SD 1.5 preset: random weights built with a fixed seed, written with
`save_pretrained`, loaded with `DiffusionPipeline.from_pretrained`. It exercises the SDXL code paths
(second text encoder, pooled text embeddings, `add_time_ids`) without SDXL's 2.6 B UNet parameters.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from canvas.core.presets.diffusion import save_atomically, sd15_ddim_scheduler, tiny_clip_tokenizer, tiny_vae
from canvas.core.presets.registry import SEED

TINY_SDXL = "tiny-sdxl"
_TEXT_WIDTH = 32
_TIME_EMBED_DIM = 8


def build_tiny_sdxl(out_dir: Path, seed: int = SEED) -> Path:
    """Build the tiny SDXL-style pipeline with a fixed seed and `save_pretrained` it to `out_dir`."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = tiny_clip_tokenizer(tmp / "_bpe")
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_WIDTH,
        intermediate_size=64,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        projection_dim=_TEXT_WIDTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            # SDXL's micro-conditioning: pooled text embedding + 6 size/crop numbers.
            addition_embed_type="text_time",
            addition_time_embed_dim=_TIME_EMBED_DIM,
            projection_class_embeddings_input_dim=6 * _TIME_EMBED_DIM + _TEXT_WIDTH,
            cross_attention_dim=2 * _TEXT_WIDTH,  # both encoders' hidden states, concatenated
        )
        vae = tiny_vae()
        text_encoder = CLIPTextModel(text_config)
        text_encoder_2 = CLIPTextModelWithProjection(text_config)
    scheduler = sd15_ddim_scheduler()
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    return save_atomically(pipe, tmp, out_dir)
