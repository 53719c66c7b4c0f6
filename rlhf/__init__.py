"""Reward models, Diffusion-DPO, DDPO and evaluation on diffusers + peft + accelerate."""
