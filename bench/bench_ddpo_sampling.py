"""DDPO sampling (DDIM with per-step log-probs and the recorded trajectory) vs the stock diffusers call.

Both sides use the same pipeline, scheduler, steps, eta, guidance and batch; each is timed `--repeats`
times, interleaved, after one warm-up each, and the ratio of medians is printed. Goal: <= 1.15x.

    .venv/bin/python bench/bench_ddpo_sampling.py [--pretrained tiny] [--steps 20] [--batch 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from canvas.presets import load_pipeline
from rlhf.ddim_logprob import sample_with_logprob

GOAL = 1.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default="tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--eta", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = load_pipeline(args.pretrained).to(device)
    prompts = [f"a photo of object number {i}" for i in range(args.batch)]

    def stock() -> torch.Tensor:
        return pipe(
            prompts, num_inference_steps=args.steps, guidance_scale=args.guidance, eta=args.eta,
            generator=torch.Generator().manual_seed(0), output_type="pt",
        ).images  # fmt: skip

    def with_logprob() -> torch.Tensor:
        return sample_with_logprob(
            pipe, prompts, args.steps, args.guidance, args.eta, generator=torch.Generator().manual_seed(0)
        ).images

    def timed(fn) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    same = torch.allclose(stock().cpu(), with_logprob().cpu(), atol=1e-5)  # also the warm-up
    times: dict[str, list[float]] = {"stock": [], "logprob": []}
    for _ in range(args.repeats):
        times["stock"].append(timed(stock))
        times["logprob"].append(timed(with_logprob))
    stock_s, ours_s = statistics.median(times["stock"]), statistics.median(times["logprob"])
    ratio = ours_s / stock_s
    print(
        f"pipeline={args.pretrained} device={device} steps={args.steps} batch={args.batch} "
        f"guidance={args.guidance} eta={args.eta} repeats={args.repeats}"
    )
    print(f"stock pipeline call      : median {stock_s * 1000:.1f} ms")
    print(f"sampling with log-probs  : median {ours_s * 1000:.1f} ms (same images: {same})")
    print(
        f"ratio (log-prob / stock) : {ratio:.3f}x  (goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
