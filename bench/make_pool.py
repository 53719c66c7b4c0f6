"""A synthetic DataComp-layout pool: `shard_NNNNN.parquet` (uid, text, original_width, original_height, url,
key) + `shard_NNNNN.npz` (b32_img, b32_txt, l14_img, l14_txt as float16, L2-normalised, rows aligned), no
images, with planted duplicate groups and a truth file.

Planted copies of an original (same group id in `truth.parquet`):
- exact: the identical image embedding under another uid (a re-upload),
- near: the embedding plus noise at cosine ~0.999 (a re-encode),
- semantic: noise at cosine ~0.995 (a crop or edit), still inside SemDeDup's 1 - eps = 0.99.
Distinct records are random 512-d directions (cosine ~0 +- 0.05 to each other), far outside.

    python bench/make_pool.py OUT_DIR --n 10000 [--shards 4] [--seed 0] [--clip-retrieval DIR]

`as_clip_retrieval` (--clip-retrieval DIR) also writes the pool in clip-retrieval's embeddings layout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ADJ = ["red", "green", "small", "large", "old", "new", "bright", "dark", "wooden", "quiet"]
NOUN = ["cat", "dog", "house", "car", "tree", "boat", "bridge", "chair", "garden", "train"]
PLACE = ["park", "city", "forest", "kitchen", "street", "beach", "field", "station", "market", "valley"]
COPY_NOISE = {"exact": 0.0, "near": 0.045, "semantic": 0.1}  # noise norm -> cosine ~1, 0.999, 0.995


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _uids(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.integers(0, 2**63, (n, 2), dtype=np.uint64)
    return [f"{int(a):016x}{int(b):016x}" for a, b in raw]


def make_pool(
    out: Path, n: int, shards: int = 4, seed: int = 0, dim: int = 512, dup_share: float = 0.2
) -> dict[str, int]:
    """Writes the pool and `truth.parquet` (uid, group, kind); returns counts per kind."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    n_copies = int(n * dup_share)
    n_orig = n - n_copies
    img = _unit(rng.standard_normal((n_orig, dim)).astype(np.float32))
    of = rng.integers(0, n_orig, n_copies)
    kinds = rng.choice(list(COPY_NOISE), n_copies)
    noise = _unit(rng.standard_normal((n_copies, dim)).astype(np.float32))
    scale = np.array([COPY_NOISE[k] for k in kinds], dtype=np.float32)[:, None]
    img = np.concatenate([img, _unit(img[of] + scale * noise)])
    # Text embeddings at CLIP-score ~0.32 +- 0.03 (DataComp's B/32 median is near 0.3); copies share theirs.
    score = np.clip(rng.normal(0.32, 0.03, n_orig), 0.05, 0.9).astype(np.float32)[:, None]
    ortho = _unit(rng.standard_normal((n_orig, dim)).astype(np.float32))
    ortho = _unit(ortho - np.sum(ortho * img[:n_orig], axis=1, keepdims=True) * img[:n_orig])
    txt = _unit(score * img[:n_orig] + np.sqrt(1 - score**2) * ortho)
    txt = np.concatenate([txt, txt[of]])
    words = rng.integers(0, 10, (n_orig, 3))
    texts = [f"a photo of a {ADJ[a]} {NOUN[b]} in the {PLACE[c]}" for a, b, c in words]
    texts += [texts[o] for o in of]
    width = rng.integers(256, 1024, n_orig)
    height = (width * rng.uniform(0.6, 1.6, n_orig)).astype(np.int64)
    width, height = np.concatenate([width, width[of]]), np.concatenate([height, height[of]])
    uids = _uids(rng, n)
    order = rng.permutation(n)  # copies spread over every shard
    group = np.concatenate([np.arange(n_orig), of])
    kind = ["original"] * n_orig + list(kinds)
    for s, rows in enumerate(np.array_split(order, shards)):
        name = out / f"shard_{s:05d}"
        table = pa.table(
            {
                "uid": [uids[i] for i in rows],
                "text": [texts[i] for i in rows],
                "original_width": width[rows],
                "original_height": height[rows],
                "url": [f"https://example.com/{uids[i]}.jpg" for i in rows],
                "key": [f"{s:05d}{j:04d}" for j in range(len(rows))],
            }
        )
        pq.write_table(table, f"{name}.parquet")
        e_img, e_txt = img[rows].astype(np.float16), txt[rows].astype(np.float16)
        np.savez(f"{name}.npz", b32_img=e_img, b32_txt=e_txt, l14_img=e_img, l14_txt=e_txt)
    truth = pa.table({"uid": uids, "group": group, "kind": kind})
    pq.write_table(truth, out.parent / f"{out.name}_truth.parquet")
    return {k: int(sum(1 for x in kind if x == k)) for k in ("original", *COPY_NOISE)}


def as_clip_retrieval(pool: Path, out: Path, uids: bool = True) -> None:
    """The pool rewritten in clip-retrieval inference's layout: `img_emb/img_emb_N.npy`,
    `text_emb/text_emb_N.npy` (float16) and `metadata/metadata_N.parquet` (image_path, caption and the
    reader's metadata columns; `uid` only when `uids`)."""
    shards = sorted(pool.glob("shard_*.parquet"))
    digits = len(str(len(shards)))  # clip-retrieval zero-pads N to the partition count's digits
    for sub in ("img_emb", "text_emb", "metadata"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for n, shard in enumerate(shards):
        part = str(n).zfill(digits)
        meta = pq.read_table(shard).to_pydict()
        with np.load(shard.with_suffix(".npz")) as arrays:
            np.save(out / "img_emb" / f"img_emb_{part}.npy", arrays["b32_img"])
            np.save(out / "text_emb" / f"text_emb_{part}.npy", arrays["b32_txt"])
        columns = {
            "image_path": [f"{k}.jpg" for k in meta["key"]],
            "caption": meta["text"],
            "url": meta["url"],
            "key": meta["key"],
            "original_width": meta["original_width"],
            "original_height": meta["original_height"],
        }
        if uids:
            columns["uid"] = meta["uid"]
        pq.write_table(pa.table(columns), out / "metadata" / f"metadata_{part}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clip-retrieval", type=Path, help="also write it in clip-retrieval's layout here")
    args = parser.parse_args()
    print(make_pool(args.out, args.n, args.shards, args.seed))
    if args.clip_retrieval:
        as_clip_retrieval(args.out, args.clip_retrieval)


if __name__ == "__main__":
    main()
