"""DDIM sampling that records the log-probability of every step (the policy DDPO optimises).

With `eta > 0` a DDIM step is a Gaussian: `x_{t-1} ~ N(mean(x_t, eps), (eta * sigma_t)^2)` where `mean` is
diffusers' `DDIMScheduler.step` without its noise term and `sigma_t` is the scheduler's
`_get_variance(t, t_prev) ** 0.5`. `ddim_step_with_logprob` reproduces that step for the same scheduler
config (timestep spacing, prediction type, sample clipping) and also returns the log-density of the
sampled (or a given) `x_{t-1}`. Log-densities are averaged over latent elements, as in Black et al.'s
reference code, so the PPO clip range (1e-4) means the same thing for every latent size.

`sample_with_logprob` is the denoising loop of `StableDiffusionPipeline.__call__` (same prompt encoding,
latent preparation, classifier-free guidance and decoding, so with the same generator it returns the
same images) that also keeps each step's latents, log-probs and timesteps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class DDIMStepOutput:
    """One stochastic DDIM step: `prev_sample ~ N(prev_sample_mean, std_dev_t ** 2)`."""

    prev_sample: torch.Tensor
    log_prob: torch.Tensor  # (B,): mean over latent elements of the Gaussian log-density
    prev_sample_mean: torch.Tensor
    std_dev_t: torch.Tensor  # broadcastable to the latents: (B, 1, ..., 1)
    pred_original_sample: torch.Tensor  # the model's estimate of x_0 from `sample`


@dataclass
class SampleTrajectory:
    """What DDPO needs from a sampling run: the chain of latents, its log-probs and the conditioning."""

    images: torch.Tensor  # (B, 3, H, W) in [0, 1]
    latents: torch.Tensor  # (B, T + 1, C, h, w): x_T ... x_0
    log_probs: torch.Tensor  # (B, T): log p(x_{t-1} | x_t) of each step taken
    timesteps: torch.Tensor  # (B, T)
    prompt_embeds: torch.Tensor  # (B, L, D)
    negative_prompt_embeds: torch.Tensor  # (B, L, D)
    pred_x0: torch.Tensor | None = None  # (B, T, C, h, w): step k's estimate of x_0 from x_{t_k}, if kept


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Per-element log N(x; mean, std^2), averaged over all but the batch dimension -> (B,)."""
    elementwise = -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - _LOG_SQRT_2PI
    return elementwise.mean(dim=tuple(range(1, x.ndim)))


def _per_sample(values: torch.Tensor, index: torch.Tensor, ndim: int) -> torch.Tensor:
    """`values[index]` reshaped to (B, 1, ..., 1) so it broadcasts over latents."""
    return values[index].reshape(-1, *([1] * (ndim - 1)))


def ddim_step_with_logprob(
    scheduler: Any,
    model_output: torch.Tensor,
    timestep: int | torch.Tensor,
    sample: torch.Tensor,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
    prev_sample: torch.Tensor | None = None,
) -> DDIMStepOutput:
    """`DDIMScheduler.step` with `eta > 0` that also returns `log p(prev_sample | sample)`.

    `timestep` may be one int for the batch or a tensor of one timestep per sample (training visits
    timesteps in a different order for each sample). When `prev_sample` is given it is scored instead
    of drawing a new one (the training pass); otherwise noise is drawn with diffusers' `randn_tensor`
    and `generator`, exactly as `DDIMScheduler.step` draws it.
    """
    if eta <= 0:
        raise ValueError("a log-probability needs a stochastic step: eta must be > 0")
    if scheduler.num_inference_steps is None:
        raise ValueError("call scheduler.set_timesteps(...) before stepping")
    config = scheduler.config
    if config.thresholding:
        raise ValueError("dynamic thresholding is not supported by the DDPO sampler; disable it")
    batch = sample.shape[0]
    t = torch.as_tensor(timestep, device="cpu").long().reshape(-1).expand(batch)
    t_prev = t - config.num_train_timesteps // scheduler.num_inference_steps
    # Alphas stay float32 for an accurate log-density, whatever dtype the UNet runs in.
    alphas = scheduler.alphas_cumprod.to("cpu", torch.float32)
    alpha_prev_all = torch.where(
        t_prev >= 0, alphas[t_prev.clamp(min=0)], scheduler.final_alpha_cumprod.float()
    )
    alpha_t = alphas[t].reshape(-1, *([1] * (sample.ndim - 1))).to(sample.device)
    alpha_prev = alpha_prev_all.reshape(alpha_t.shape).to(sample.device)
    beta_t = 1 - alpha_t
    model_output, x_t = model_output.float(), sample.float()

    if config.prediction_type == "epsilon":
        pred_x0 = (x_t - beta_t**0.5 * model_output) / alpha_t**0.5
        pred_eps = model_output
    elif config.prediction_type == "sample":
        pred_x0 = model_output
        pred_eps = (x_t - alpha_t**0.5 * pred_x0) / beta_t**0.5
    elif config.prediction_type == "v_prediction":
        pred_x0 = alpha_t**0.5 * x_t - beta_t**0.5 * model_output
        pred_eps = alpha_t**0.5 * model_output + beta_t**0.5 * x_t
    else:
        raise ValueError(f"unsupported prediction_type {config.prediction_type!r}")
    if config.clip_sample:
        pred_x0 = pred_x0.clamp(-config.clip_sample_range, config.clip_sample_range)

    # sigma_t of DDIM eq. (16), as DDIMScheduler._get_variance computes it.
    variance = (1 - alpha_prev) / beta_t * (1 - alpha_t / alpha_prev)
    std_dev_t = eta * variance**0.5
    # A step without noise (t = 0 under "linspace" spacing, the last step with set_alpha_to_one=True) is
    # deterministic: it gets log-prob 0 and so carries no policy gradient.
    deterministic = std_dev_t == 0
    direction = (1 - alpha_prev - std_dev_t**2) ** 0.5 * pred_eps
    mean = alpha_prev**0.5 * pred_x0 + direction

    if prev_sample is None:
        noise = randn_tensor(
            model_output.shape, generator=generator, device=model_output.device, dtype=sample.dtype
        )
        prev_sample = (mean + std_dev_t * noise.float()).to(sample.dtype)
    log_prob = gaussian_log_prob(
        prev_sample.detach().float(), mean, torch.where(deterministic, 1.0, std_dev_t)
    )
    log_prob = torch.where(deterministic.flatten(), torch.zeros_like(log_prob), log_prob)
    return DDIMStepOutput(prev_sample, log_prob, mean.to(sample.dtype), std_dev_t, pred_x0.to(sample.dtype))


def predict_noise(
    unet: Any,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    prompt_embeds: torch.Tensor,
    negative_prompt_embeds: torch.Tensor | None,
    guidance_scale: float,
) -> torch.Tensor:
    """The UNet's prediction with classifier-free guidance (unconditional half first, as diffusers does)."""
    if negative_prompt_embeds is None or guidance_scale <= 1.0:
        return unet(latents, timesteps, encoder_hidden_states=prompt_embeds, return_dict=False)[0]
    t_in = timesteps if timesteps.ndim == 0 else torch.cat([timesteps, timesteps])
    out = unet(
        torch.cat([latents, latents]),
        t_in,
        encoder_hidden_states=torch.cat([negative_prompt_embeds, prompt_embeds]),
        return_dict=False,
    )[0]
    uncond, cond = out.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def encode_prompts(
    pipe: Any, prompts: Sequence[str], negative_prompt: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt_embeds, negative_prompt_embeds), one row per prompt, through the pipeline's own encoder."""
    prompt_embeds, negative = pipe.encode_prompt(
        list(prompts),
        pipe._execution_device,
        num_images_per_prompt=1,
        do_classifier_free_guidance=True,
        negative_prompt=[negative_prompt] * len(prompts),
    )
    return prompt_embeds, negative


def decode_latents(pipe: Any, latents: torch.Tensor) -> torch.Tensor:
    """Latents -> images (B, 3, H, W) in [0, 1], as the pipeline's `output_type="pt"` gives them."""
    image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return (image.float() / 2 + 0.5).clamp(0, 1)


@torch.no_grad()
def sample_with_logprob(
    pipe: Any,
    prompts: Sequence[str],
    num_inference_steps: int = 50,
    guidance_scale: float = 5.0,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
    negative_prompt: str = "",
    unet: Any = None,
    keep_pred_x0: bool = False,
) -> SampleTrajectory:
    """Sample images for `prompts` and record the trajectory (latents, per-step log-probs, timesteps).

    `unet` overrides `pipe.unet` (e.g. the accelerate-wrapped training model). Same steps as
    `StableDiffusionPipeline.__call__(prompts, eta=eta, generator=generator, output_type="pt")`.
    `keep_pred_x0` also keeps each step's estimate of the clean latents (DDPO's per-step baseline).
    """
    unet = unet if unet is not None else pipe.unet
    scheduler = pipe.scheduler
    device = pipe._execution_device
    prompt_embeds, negative_embeds = encode_prompts(pipe, prompts, negative_prompt)
    scheduler.set_timesteps(num_inference_steps, device=device)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    latents = pipe.prepare_latents(
        len(prompts), pipe.unet.config.in_channels, size, size, prompt_embeds.dtype, device, generator
    )
    chain, log_probs, pred_x0 = [latents], [], []
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, t)
        noise_pred = predict_noise(unet, model_input, t, prompt_embeds, negative_embeds, guidance_scale)
        step = ddim_step_with_logprob(scheduler, noise_pred, t, latents, eta=eta, generator=generator)
        latents = step.prev_sample
        chain.append(latents)
        log_probs.append(step.log_prob)
        if keep_pred_x0:
            pred_x0.append(step.pred_original_sample)
    return SampleTrajectory(
        images=decode_latents(pipe, latents),
        latents=torch.stack(chain, dim=1),
        log_probs=torch.stack(log_probs, dim=1),
        timesteps=scheduler.timesteps.reshape(1, -1).repeat(len(prompts), 1),
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_embeds,
        pred_x0=torch.stack(pred_x0, dim=1) if keep_pred_x0 else None,
    )


def transition_log_prob(
    unet: Any,
    scheduler: Any,
    latents: torch.Tensor,
    next_latents: torch.Tensor,
    timesteps: torch.Tensor,
    prompt_embeds: torch.Tensor,
    negative_prompt_embeds: torch.Tensor | None,
    guidance_scale: float,
    eta: float,
) -> torch.Tensor:
    """log p_theta(next_latents | latents, t) under the current UNet (the training pass, with gradients)."""
    model_input = scheduler.scale_model_input(latents, timesteps)
    noise_pred = predict_noise(
        unet, model_input, timesteps, prompt_embeds, negative_prompt_embeds, guidance_scale
    )
    return ddim_step_with_logprob(
        scheduler, noise_pred, timesteps, latents, eta=eta, prev_sample=next_latents
    ).log_prob
