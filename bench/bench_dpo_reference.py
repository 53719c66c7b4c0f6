"""Diffusion-DPO step: reference = the LoRA UNet with adapters disabled vs a second frozen UNet copy.

Goal: peak memory <= 0.6x and step time <= 1.1x of the original recipe (a second frozen UNet as the
reference). Both variants run the same DPO step (shared noise and timestep, policy forward + backward,
reference forward, `sigmoid_dpo_loss`, AdamW on the LoRA) on an SD-1.5-sized UNet
(`UNet2DConditionModel`, 860 M parameters, random weights) at a small latent size, each in its own
process so that peak resident memory (ru_maxrss) is the variant's own. Ratios are disabled / copy.

Usage: .venv/bin/python bench/bench_dpo_reference.py [--latent 16] [--pairs 1] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

GOAL_MEMORY, GOAL_TIME = 0.6, 1.1


def sd15_unet():
    """SD 1.5's UNet architecture (its published config), random weights."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=(
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
        layers_per_block=2,
    )


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(variant: str, latent: int, pairs: int, steps: int) -> dict:
    import copy

    import torch

    from canvas.rlhf.dpo_trainer import sigmoid_dpo_loss
    from canvas.rlhf.lora import adapters_disabled, add_unet_lora

    torch.manual_seed(0)
    after_imports = rss_mb()
    unet = sd15_unet()
    reference = copy.deepcopy(unet).requires_grad_(False).eval() if variant == "copy" else None
    params = add_unet_lora(unet, rank=8)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    latents = torch.randn(2 * pairs, 4, latent, latent)
    text = torch.randn(2 * pairs, 77, 768)

    def mse(model, noisy, t, noise):
        return (model(noisy, t, encoder_hidden_states=text).sample - noise).pow(2).mean(dim=(1, 2, 3))

    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        start = time.perf_counter()
        noise = torch.randn_like(latents[:pairs]).repeat(2, 1, 1, 1)
        t = torch.randint(0, 1000, (pairs,)).repeat(2)
        noisy = latents + noise  # the scheduler's scaling does not change the cost
        model_mse = mse(unet, noisy, t, noise)
        with torch.no_grad():
            if reference is not None:
                ref_mse = mse(reference, noisy, t, noise)
            else:
                with adapters_disabled(unet):
                    ref_mse = mse(unet, noisy, t, noise)
        loss = sigmoid_dpo_loss(
            model_mse[:pairs] - model_mse[pairs:],
            ref_mse[:pairs] - ref_mse[pairs:],
            5000.0,
            torch.ones(pairs),
        ).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return {
        "variant": variant,
        "peak_rss_mb": rss_mb(),
        "rss_after_imports_mb": after_imports,
        "step_s": statistics.median(times[1:]),
        "unet_params_m": sum(p.numel() for p in unet.parameters()) / 1e6,
        "lora_params_m": sum(p.numel() for p in params) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent", type=int, default=16, help="latent side (16 = 128 px images)")
    parser.add_argument("--pairs", type=int, default=1, help="preference pairs per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--variant", choices=("copy", "disabled"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.latent, args.pairs, args.steps)))
        return
    results = {}
    for variant in ("copy", "disabled"):
        cmd = [sys.executable, __file__, "--variant", variant, "--latent", str(args.latent)]
        cmd += ["--pairs", str(args.pairs), "--steps", str(args.steps)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
        r = results[variant]
        print(
            f"{variant:>8}: peak RSS {r['peak_rss_mb']:8.0f} MB (after imports {r['rss_after_imports_mb']:.0f} MB), "
            f"step {r['step_s']:.2f} s  [UNet {r['unet_params_m']:.0f} M params, LoRA {r['lora_params_m']:.2f} M]"
        )
    copy_r, dis_r = results["copy"], results["disabled"]
    mem = dis_r["peak_rss_mb"] / copy_r["peak_rss_mb"]
    mem_net = (dis_r["peak_rss_mb"] - dis_r["rss_after_imports_mb"]) / (
        copy_r["peak_rss_mb"] - copy_r["rss_after_imports_mb"]
    )
    step = dis_r["step_s"] / copy_r["step_s"]
    print(
        f"peak memory ratio (disabled / copy): {mem:.3f}  (goal <= {GOAL_MEMORY}) {'OK' if mem <= GOAL_MEMORY else 'MISSED'}"
    )
    print(f"  excluding the interpreter + libraries: {mem_net:.3f}")
    print(
        f"step time ratio   (disabled / copy): {step:.3f}  (goal <= {GOAL_TIME}) {'OK' if step <= GOAL_TIME else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
