"""DDPO sampling (DDIM with per-step log-probs and the recorded trajectory) vs the stock diffusers call.

Both sides use the same pipeline, scheduler, steps, eta, guidance and batch; each is timed `--repeats`
times, interleaved, after one warm-up each, and the ratio of medians is printed. Goal: <= 1.15x.

    .venv/bin/python bench/bench_ddpo_sampling.py [--pretrained tiny] [--steps 20] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from canvas.core.presets.loading import load_pipeline
from canvas.rlhf.ddim_logprob import sample_with_logprob

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

    def timed(fn) -> tuple[float, float]:
        if device == "cuda":
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        with torch.no_grad():
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - cpu_start

    same = torch.allclose(stock().cpu(), with_logprob().cpu(), atol=1e-5)  # also the warm-up
    runs: dict[str, list[tuple[float, float]]] = {"stock": [], "logprob": []}
    for _ in range(args.repeats):
        runs["stock"].append(timed(stock))
        runs["logprob"].append(timed(with_logprob))
    wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    ratio, cpu_ratio = wall["logprob"] / wall["stock"], cpu["logprob"] / cpu["stock"]
    print(
        f"pipeline={args.pretrained} device={device} steps={args.steps} batch={args.batch} "
        f"guidance={args.guidance} eta={args.eta} repeats={args.repeats} load={os.getloadavg()[0]:.1f}"
    )
    print(
        f"stock pipeline call      : median {wall['stock'] * 1000:.1f} ms wall, {cpu['stock'] * 1000:.1f} ms CPU"
    )
    print(
        f"sampling with log-probs  : median {wall['logprob'] * 1000:.1f} ms wall, {cpu['logprob'] * 1000:.1f} ms CPU "
        f"(same images: {same})"
    )
    print(f"ratio (log-prob / stock) : {ratio:.3f}x wall, {cpu_ratio:.3f}x CPU  (goal <= {GOAL}x)")


if __name__ == "__main__":
    main()
