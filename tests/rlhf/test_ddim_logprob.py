"""The DDIM log-prob step is diffusers' DDIMScheduler.step plus an exact Gaussian log-density."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from canvas.core.presets.loading import load_pipeline
from canvas.rlhf.ddim_logprob import (
    ddim_step_with_logprob,
    gaussian_log_prob,
    sample_with_logprob,
    transition_log_prob,
)

SD15_SCHEDULER = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", set_alpha_to_one=False, steps_offset=1
)


def _scheduler(**overrides) -> DDIMScheduler:
    scheduler = DDIMScheduler(**{**SD15_SCHEDULER, "clip_sample": False, **overrides})
    scheduler.set_timesteps(10)
    return scheduler


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"prediction_type": "v_prediction"},
        {"prediction_type": "sample", "clip_sample": True},
        {"timestep_spacing": "trailing"},
        {"timestep_spacing": "linspace"},
    ],
    ids=["epsilon-leading", "v_prediction", "sample-clipped", "trailing", "linspace"],
)
@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_step_matches_diffusers_for_the_same_noise(overrides: dict, eta: float) -> None:
    scheduler = _scheduler(**overrides)
    torch.manual_seed(0)
    sample, model_output, noise = (torch.randn(3, 4, 8, 8) for _ in range(3))
    for t in scheduler.timesteps:
        ours = ddim_step_with_logprob(scheduler, model_output, t, sample, eta=eta, prev_sample=None,
                                      generator=torch.Generator().manual_seed(int(t)))  # fmt: skip
        theirs = scheduler.step(
            model_output, t, sample, eta=eta, generator=torch.Generator().manual_seed(int(t))
        )
        torch.testing.assert_close(ours.prev_sample, theirs.prev_sample, rtol=1e-5, atol=1e-5)
        # DDPO's per-step baseline decodes this estimate of x_0
        torch.testing.assert_close(
            ours.pred_original_sample, theirs.pred_original_sample, rtol=1e-5, atol=1e-5
        )
        # The mean is diffusers' step with zero noise; std is eta * sigma_t from the scheduler itself.
        mean = scheduler.step(
            model_output, t, sample, eta=eta, variance_noise=torch.zeros_like(noise)
        ).prev_sample
        torch.testing.assert_close(ours.prev_sample_mean, mean, rtol=1e-5, atol=1e-5)
        prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        expected_std = eta * scheduler._get_variance(t, prev_t) ** 0.5
        torch.testing.assert_close(ours.std_dev_t.flatten(), expected_std.expand(3).float())


def test_log_prob_is_the_gaussian_density_of_the_given_sample() -> None:
    scheduler = _scheduler()
    torch.manual_seed(1)
    sample, model_output = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    t = scheduler.timesteps[3]
    drawn = ddim_step_with_logprob(scheduler, model_output, t, sample, eta=1.0)
    normal = torch.distributions.Normal(drawn.prev_sample_mean, drawn.std_dev_t.expand_as(sample))
    expected = normal.log_prob(drawn.prev_sample).mean(dim=(1, 2, 3))
    torch.testing.assert_close(drawn.log_prob, expected)
    # Scoring a given next latent (the training pass) uses the same density.
    other = torch.randn_like(sample)
    scored = ddim_step_with_logprob(scheduler, model_output, t, sample, eta=1.0, prev_sample=other)
    torch.testing.assert_close(scored.log_prob, normal.log_prob(other).mean(dim=(1, 2, 3)))
    assert torch.equal(scored.prev_sample, other)
    # A sample far from the mean is less likely than the drawn one.
    assert (scored.log_prob < drawn.log_prob).all()
    torch.testing.assert_close(
        gaussian_log_prob(other, other, torch.tensor(2.0)), torch.full((4,), expected_peak(2.0))
    )


def expected_peak(std: float) -> float:
    return float(torch.distributions.Normal(0.0, std).log_prob(torch.tensor(0.0)))


def test_per_sample_timesteps_equal_one_step_per_sample() -> None:
    scheduler = _scheduler()
    torch.manual_seed(2)
    sample, model_output, nxt = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    ts = scheduler.timesteps[[0, 4, 9]]
    batched = ddim_step_with_logprob(scheduler, model_output, ts, sample, prev_sample=nxt)
    for i, t in enumerate(ts):
        single = ddim_step_with_logprob(
            scheduler, model_output[i : i + 1], t, sample[i : i + 1], prev_sample=nxt[i : i + 1]
        )
        torch.testing.assert_close(batched.log_prob[i : i + 1], single.log_prob)


def test_deterministic_step_is_refused() -> None:
    scheduler = _scheduler()
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match="eta must be > 0"):
        ddim_step_with_logprob(scheduler, x, scheduler.timesteps[0], x, eta=0.0)


def test_noiseless_steps_are_deterministic_with_log_prob_zero() -> None:
    # The last step with set_alpha_to_one=True, and t = 0 under linspace spacing, add no noise.
    for scheduler in (_scheduler(set_alpha_to_one=True), _scheduler(timestep_spacing="linspace")):
        x, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
        t = scheduler.timesteps[-1]
        out = ddim_step_with_logprob(
            scheduler, eps, t, x, eta=1.0, generator=torch.Generator().manual_seed(0)
        )
        assert torch.equal(out.log_prob, torch.zeros(2))
        torch.testing.assert_close(out.prev_sample, scheduler.step(eps, t, x, eta=1.0).prev_sample)


def test_sampling_loop_reproduces_the_stock_pipeline_and_its_log_probs(tiny_presets) -> None:
    pipe = load_pipeline("tiny")
    prompts = ["a red ball", "a cat on a mat", "a red ball"]
    stock = pipe(prompts, num_inference_steps=6, guidance_scale=5.0, eta=1.0, output_type="pt",
                 generator=torch.Generator().manual_seed(7)).images  # fmt: skip
    traj = sample_with_logprob(pipe, prompts, 6, 5.0, eta=1.0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(traj.images, stock, rtol=0, atol=1e-6)
    assert traj.latents.shape == (3, 7, 4, 16, 16) and traj.log_probs.shape == (3, 6)
    assert torch.equal(traj.timesteps[0], pipe.scheduler.timesteps)
    # Re-scoring the recorded transitions with the same model gives the recorded log-probs (ratio 1).
    with torch.no_grad():
        for j in (0, 3, 5):
            rescored = transition_log_prob(
                pipe.unet, pipe.scheduler, traj.latents[:, j], traj.latents[:, j + 1], traj.timesteps[:, j],
                traj.prompt_embeds, traj.negative_prompt_embeds, 5.0, 1.0,
            )  # fmt: skip
            torch.testing.assert_close(rescored, traj.log_probs[:, j], rtol=0, atol=1e-5)
