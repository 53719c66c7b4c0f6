"""Synthetic image-text records for the curation benchmarks: distinct smooth random photos (they pass
every filter and dedup stage, so every stage does its full work on every record)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

WORDS = [
    "a",
    "photo",
    "of",
    "red",
    "green",
    "blue",
    "cat",
    "dog",
    "tree",
    "house",
    "car",
    "river",
    "mountain",
    "city",
    "street",
    "sky",
    "cloud",
]


def make_image(rng: np.random.Generator, size: int = 256) -> bytes:
    small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    img = small.resize((size, size), Image.Resampling.BICUBIC)
    noise = rng.integers(-12, 12, (size, size, 3))
    img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_records(path: Path, n: int, size: int = 256, seed: int = 0) -> Path:
    """n records (256 px JPEG: img2dataset's default resize) with 8-word captions."""
    rng = np.random.default_rng(seed)
    rows = {
        "key": [f"{i:08d}" for i in range(n)],
        "caption": [" ".join(rng.choice(WORDS, 8)) for _ in range(n)],
        "image": [make_image(rng, size) for _ in range(n)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)
    return path
