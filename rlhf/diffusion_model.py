"""The diffusion model as every trainer prepares it: one `load_diffusion_model` for DPO, SFT and DDPO.

- the pipeline comes from `canvas.core.presets.loading.load_pipeline` (a preset, SD 1.5 or SDXL);
- frozen weights run in the mixed-precision dtype (`weight_dtype`), the LoRA added later stays fp32;
- the VAE encodes in fp32 (SDXL's fp16 VAE overflows), unless `pipeline_dtype` keeps the whole pipeline
  in one dtype (DDPO samples with the stock pipeline, VAE decode included);
- VAE, text encoders and UNet are frozen (`add_unet_lora` then adds the only trainable weights);
- SDXL's extra conditioning: pooled text embeddings and the (original size, crop, target size) time ids.

`image_to_tensor` is the one way training images become tensors (shorter side resized, centre crop).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)


def weight_dtype_for(mixed_precision: str) -> torch.dtype:
    """The dtype of frozen weights under accelerate's `mixed_precision` ("no" -> fp32)."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)


def image_to_tensor(image: Image.Image, resolution: int) -> torch.Tensor:
    """Resize the shorter side to `resolution`, centre-crop a square: `(3, R, R)` float in [0, 1]."""
    w, h = image.size
    scale = resolution / min(w, h)
    resized = image.resize(
        (max(resolution, round(w * scale)), max(resolution, round(h * scale))), Image.BICUBIC
    )
    left = (resized.width - resolution) // 2
    top = (resized.height - resolution) // 2
    cropped = resized.crop((left, top, left + resolution, top + resolution))
    return torch.from_numpy(np.asarray(cropped, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


@dataclass
class DiffusionModel:
    """A loaded, frozen pipeline and what training needs to know about it."""

    pipe: Any
    weight_dtype: torch.dtype
    device: Any
    resolution: int

    @property
    def is_sdxl(self) -> bool:
        return getattr(self.pipe, "text_encoder_2", None) is not None

    @torch.no_grad()
    def encode_prompts(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text conditioning without guidance: (embeddings, SDXL's pooled embeddings or None)."""
        if self.is_sdxl:
            embeds, _, pooled, _ = self.pipe.encode_prompt(
                captions, device=self.device, do_classifier_free_guidance=False
            )
            return embeds, pooled
        embeds, _ = self.pipe.encode_prompt(captions, self.device, 1, False)
        return embeds, None

    def added_cond(self, pooled: torch.Tensor | None) -> dict[str, torch.Tensor] | None:
        """SDXL's `added_cond_kwargs` for a batch with these pooled embeddings (None for SD 1.5): the
        time ids say the image was `resolution` square, uncropped, generated at `resolution`."""
        if pooled is None:
            return None
        r = self.resolution
        time_ids = torch.tensor([[r, r, 0, 0, r, r]], device=self.device, dtype=self.weight_dtype)
        return {"text_embeds": pooled, "time_ids": time_ids.repeat(len(pooled), 1)}


def load_diffusion_model(
    pretrained: str,
    device: Any,
    mixed_precision: str = "no",
    resolution: int | None = None,
    pipeline_dtype: bool = False,
) -> DiffusionModel:
    """Load `pretrained` frozen onto `device` (see the module docstring); `resolution` defaults to the
    UNet's native image size."""
    from canvas.core.presets.loading import load_pipeline

    dtype = weight_dtype_for(mixed_precision)
    if pipeline_dtype:
        pipe = load_pipeline(pretrained, dtype=dtype)
        for module in (pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None), pipe.unet):
            if module is not None:
                module.requires_grad_(False)
        pipe.to(device)
    else:
        pipe = load_pipeline(pretrained)
        pipe.vae.to(device, dtype=torch.float32).requires_grad_(False)  # fp16 VAEs overflow: fp32
        for encoder in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)):
            if encoder is not None:
                encoder.to(device, dtype=dtype).requires_grad_(False)
        pipe.unet.to(device, dtype=dtype).requires_grad_(False)
    size = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    return DiffusionModel(pipe=pipe, weight_dtype=dtype, device=device, resolution=size)


def load_ddim_sampling_pipeline(pretrained: str, device: Any, mixed_precision: str, method: str) -> Any:
    """The SD-1.5-style pipeline an on-policy trainer (DDPO, DRaFT) samples from with DDIM, frozen, in one
    dtype (the stock pipeline decodes too); another pipeline class is one line naming `method`."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from canvas.core.errors import CanvasError

    pipe = load_diffusion_model(pretrained, device, mixed_precision, pipeline_dtype=True).pipe
    if not isinstance(pipe, StableDiffusionPipeline):
        raise CanvasError(f"{method} supports SD-1.5-style pipelines; {pretrained} is {type(pipe).__name__}")
    if not isinstance(pipe.scheduler, DDIMScheduler):
        logger.info(
            "replacing %s with DDIMScheduler (%s samples with DDIM)", type(pipe.scheduler).__name__, method
        )
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe
