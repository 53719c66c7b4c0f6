"""pHash is robust to re-encoding and resizing; the FAISS binary search finds what brute force finds."""

from __future__ import annotations

import io
import itertools

import numpy as np
from PIL import Image

from canvas.curation.hashing import hamming, phash, phash_to_bytes
from canvas.curation.near_dedup import HashItem, find_near_duplicates


def _photo(seed: int) -> Image.Image:
    # Smooth random images (upsampled noise) behave like photos for a low-frequency hash.
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    return small.resize((256, 256), Image.Resampling.BICUBIC)


def test_phash_robust_to_edits_and_distinct_across_images() -> None:
    img = _photo(0)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=50)
    assert hamming(phash(img), phash(Image.open(buf))) <= 4
    assert hamming(phash(img), phash(img.resize((180, 180)))) <= 4
    distinct = [hamming(phash(_photo(a)), phash(_photo(b))) for a, b in itertools.combinations(range(6), 2)]
    assert min(distinct) > 12


def test_faiss_code_layout_matches_python_hamming() -> None:
    import faiss

    rng = np.random.default_rng(1)
    values = [int(v) for v in rng.integers(0, 2**63, 50, dtype=np.uint64)]
    index = faiss.IndexBinaryFlat(64)
    codes = phash_to_bytes(values)
    index.add(codes)
    dist, ids = index.search(codes[:5], 50)
    for q in range(5):
        for d, i in zip(dist[q], ids[q], strict=True):
            assert d == hamming(values[q], values[i])


def _planted(rng: np.random.Generator, n: int, n_dups: int, flips: int) -> list[HashItem]:
    base = [int(v) for v in rng.integers(0, 2**63, n, dtype=np.uint64)]
    items = [HashItem(f"k{i:05d}", h, 100, f"s{i}") for i, h in enumerate(base)]
    for j in range(n_dups):
        h = base[j]
        for bit in rng.choice(64, flips, replace=False):
            h ^= 1 << int(bit)
        items.append(HashItem(f"z{j:05d}", h, 50, f"d{j}"))  # smaller copies sort last under `largest`
    return items


def test_near_dedup_finds_every_planted_copy_and_only_those() -> None:
    rng = np.random.default_rng(2)
    items = _planted(rng, 2000, 100, flips=5)
    removed = find_near_duplicates(items, radius=8, policy="largest", query_batch=512)
    assert {d.uid for d in removed} == {f"d{j}" for j in range(100)}
    assert all(d.kept == f"k{int(d.uid[1:]):05d}" and d.distance <= 8 for d in removed)


def test_near_dedup_keeps_one_per_group_without_chaining() -> None:
    # a - b - c in a chain: b is removed (copy of a); c is kept, since its only near record b was removed.
    a = 0
    b = a ^ 0b1111
    c = b ^ (0b1111 << 8)
    items = [HashItem("a", a, 9, "1"), HashItem("b", b, 5, "2"), HashItem("c", c, 1, "3")]
    removed = find_near_duplicates(items, radius=4, policy="largest")
    assert [(d.uid, d.kept, d.distance) for d in removed] == [("2", "a", 4)]
