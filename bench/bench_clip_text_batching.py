"""CLIP text tower time with batches of similar caption lengths (the pipeline's order) vs arrival order.

`ClipEmbed` cuts each 128-record bucket into batches after ordering it by caption length, and the text
tower runs only up to each batch's longest caption (`encode_text_trimmed`). Real captions vary (LAION's:
a few words to the 77-token limit), so this matters there, not on the uniform captions of
`bench_curate_clip.py`. Captions here: word counts drawn log-normally (median ~10 words, 3-60),
words from a fixed vocabulary; model: ViT-B-32 architecture, random weights (speed only).

Usage: .venv/bin/python bench/bench_clip_text_batching.py [--captions 1024] [--batch 32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

MODEL = "ViT-B-32"


def captions(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = ["a", "photo", "of", "the", "red", "blue", "small", "large", "old", "new", "cat", "dog", "house"]
    lengths = np.clip(np.round(rng.lognormal(np.log(10), 0.7, n)), 3, 60).astype(int)
    return [" ".join(rng.choice(vocab, k)) for k in lengths]


def batches_in_arrival_order(texts: list[str], batch: int) -> list[list[str]]:
    return [texts[i : i + batch] for i in range(0, len(texts), batch)]


def batches_by_length(texts: list[str], batch: int) -> list[list[str]]:
    out = []
    from canvas.pipelines.curate_stages import BATCHES_PER_BUCKET

    bucket = batch * BATCHES_PER_BUCKET
    for i in range(0, len(texts), bucket):
        ordered = sorted(texts[i : i + bucket], key=len)
        out += batches_in_arrival_order(ordered, batch)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from canvas.curation.embedding import ClipEmbedder

    embedder = ClipEmbedder(MODEL, "none").setup()
    texts = captions(args.captions)
    plans = {
        "arrival order": batches_in_arrival_order(texts, args.batch),
        "by length": batches_by_length(texts, args.batch),
    }
    embedder.encode_texts(texts[: args.batch])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in plans}
    for _ in range(args.rounds):  # alternate, so drift hits both alike
        for name, plan in plans.items():
            start = time.perf_counter()
            for chunk in plan:
                embedder.encode_texts(chunk)
            times[name].append(time.perf_counter() - start)
    lengths = [len(embedder.tokenizer([t])[0].nonzero()) for t in texts]
    print(
        f"{args.captions} captions, tokens per caption: median {int(np.median(lengths))}, max {max(lengths)}"
    )
    for name, values in times.items():
        print(
            f"{name}: {np.median(values):.2f} s (median of {args.rounds}), {args.captions / np.median(values):.0f} captions/s"
        )
    ratio = np.median(times["by length"]) / np.median(times["arrival order"])
    print(f"by length / arrival order: {ratio:.2f}x the time")


if __name__ == "__main__":
    main()
