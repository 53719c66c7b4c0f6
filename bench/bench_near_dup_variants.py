"""Near-duplicate detection per variant kind on real photos: the whole-image pHash alone (old detector) vs
the whole-image pHash plus the hashes of each image's central regions (new, `near_dedup.crop_scales`).

Images: the 19 real sample photos (canvas.core.sample_data.PHOTOS, files inside PyPI wheels) and their
non-overlapping 2x2 and 3x3 tiles (a larger set of distinct real-photo content). Variants of each image:
JPEG quality 35, half-size (JPEG q75), +12% brightness (JPEG q75), and centred border crops resized back to
the original size (JPEG q75). `crop X%` removes X% of each dimension (X/2% off each side), so the test set's
"2.5-5% border crops" are covered whether the % is per side (crop 5-10%) or in total (crop 2.5-5%).

Old detector: Hamming(whole A, whole B) <= radius. New: that, or Hamming(whole B, A's central region at
scale s) <= crop_radius or the same the other way, for any configured scale; central regions are never
compared with each other (that brought distinct photos closer, docs/benchmarks.md).

Counted: detection = variant within the radius of its own source image; false positives = pairs of distinct
images (different tiles or photos) within the radius, and variants within the radius of an image they do
not come from. Tiles of one photo never overlap, but a tile lies inside its photo and its 2x2 quadrant; such
pairs are counted apart ("contains") since a tile is a 1/3-1/2 crop of them, not a distinct photo.

Usage: .venv/bin/python bench/bench_near_dup_variants.py [--radius 8] [--crop-radius 4] [--scales 0.95,0.9]
"""

from __future__ import annotations

import argparse
import io
import time
from importlib import resources

import numpy as np
from PIL import Image, ImageEnhance

from canvas.core.sample_data import PHOTOS
from canvas.curation.hashing import phashes
from canvas.curation.near_dedup import HashItem, NearDedupConfig, find_near_duplicates

CROPS = (0.025, 0.05, 0.075, 0.10, 0.15, 0.20)  # fraction of each dimension removed, half off each side


def _jpeg(img: Image.Image, quality: int = 75) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _crop(img: Image.Image, frac: float) -> Image.Image:
    w, h = img.size
    dx, dy = round(w * frac / 2), round(h * frac / 2)
    return _jpeg(img.crop((dx, dy, w - dx, h - dy)).resize((w, h)))


VARIANTS = {
    "jpeg q35": lambda im: _jpeg(im, 35),
    "resize 0.5": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)),
    "brightness +12%": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(1.12)),
    **{f"crop {f * 100:g}%": (lambda im, f=f: _crop(im, f)) for f in CROPS},
}


def images() -> tuple[list[str], list[Image.Image], list[tuple[str, tuple[int, int, int, int]]]]:
    """Names, images and (photo, box in it) of the 19 photos and their 2x2 and 3x3 tiles."""
    names, imgs, boxes = [], [], []
    for pkg, path, name, _ in PHOTOS:
        img = Image.open(io.BytesIO(resources.files(pkg).joinpath(path).read_bytes())).convert("RGB")
        w, h = img.size
        names.append(name)
        imgs.append(img)
        boxes.append((name, (0, 0, w, h)))
        for k in (2, 3):
            for i in range(k):
                for j in range(k):
                    box = (w * i // k, h * j // k, w * (i + 1) // k, h * (j + 1) // k)
                    names.append(f"{name}/{k}x{k}-{i}{j}")
                    imgs.append(img.crop(box))
                    boxes.append((name, box))
    return names, imgs, boxes


def _contains(a: tuple[str, tuple], b: tuple[str, tuple]) -> bool:
    """One region lies inside the other (a tile and the photo or quadrant it was cut from)."""
    if a[0] != b[0]:
        return False
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a[1], b[1]
    inside = ax0 >= bx0 and ay0 >= by0 and ax1 <= bx1 and ay1 <= by1
    return inside or (bx0 >= ax0 and by0 >= ay0 and bx1 <= ax1 and by1 <= ay1)


def whole_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 1 + S) and (m, 1 + S) hash arrays (column 0: whole image) -> (n, m) whole-image distances."""
    return np.bitwise_count(a[:, None, 0] ^ b[None, :, 0])


def region_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Nearest whole-vs-central-region distance, both ways (regions never meet regions)."""
    a_region = np.bitwise_count(a[:, None, 1:] ^ b[None, :, :1]).min(axis=2)  # A's centres vs B whole
    b_region = np.bitwise_count(a[:, None, :1] ^ b[None, :, 1:]).min(axis=2)  # A whole vs B's centres
    return np.minimum(a_region, b_region)


def matches(a: np.ndarray, b: np.ndarray, radius: int, crop_radius: int | None) -> np.ndarray:
    """Pairs the detector calls near duplicates: old (crop_radius None) or new."""
    hit = whole_dist(a, b) <= radius
    return hit if crop_radius is None else hit | (region_dist(a, b) <= crop_radius)


def pipeline_check(hashes: list[np.ndarray], groups: np.ndarray, args: argparse.Namespace) -> str:
    """`find_near_duplicates` (what curate runs) on every image and variant at once: removed, wrong merges."""
    stacked = np.concatenate(hashes)
    out = []
    for label, scales in (("old", ()), ("new", args.scales)):
        items = [
            HashItem(
                f"k{i:05d}", int(h[0]), 1, str(i), crop_phashes=tuple(int(x) for x in h[1:]) if scales else ()
            )
            for i, h in enumerate(stacked)
        ]
        removed = find_near_duplicates(items, args.radius, crop_radius=args.crop_radius, crop_scales=scales)
        by_key = {it.key: int(it.uid) for it in items}
        wrong = sum(groups[int(d.uid)] != groups[by_key[d.kept]] for d in removed)
        out.append(f"{label}: removed {len(removed)} of {len(items)}, merged across images {wrong}")
    return "; ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--radius", type=int, default=NearDedupConfig().hamming_radius)
    parser.add_argument("--crop-radius", type=int, default=NearDedupConfig().crop_radius)
    parser.add_argument("--scales", default=",".join(f"{s:g}" for s in NearDedupConfig().crop_scales))
    args = parser.parse_args()
    args.scales = tuple(float(s) for s in args.scales.split(",") if s)
    start = time.perf_counter()
    names, imgs, boxes = images()
    base = np.array([[h, *c] for h, c in (phashes(im, args.scales) for im in imgs)], dtype=np.uint64)
    variants = {
        kind: np.array([[h, *c] for h, c in (phashes(fn(im), args.scales) for im in imgs)], dtype=np.uint64)
        for kind, fn in VARIANTS.items()
    }
    n = len(imgs)
    contains = np.array([[_contains(boxes[i], boxes[j]) for j in range(n)] for i in range(n)])
    others = ~np.eye(n, dtype=bool) & ~contains
    photo = np.array(["/" not in name for name in names])  # the 19 whole photos (the rest: tiles)
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    print(
        f"{len(PHOTOS)} photos + tiles = {n} distinct images, {len(VARIANTS)} variants each; radius "
        f"{args.radius}, crop_radius {args.crop_radius}, crop_scales {args.scales}; hashing "
        f"{time.perf_counter() - start:.1f} s"
    )
    print(
        f"{'variant':<16} | {'old: all':>7} {'photos':>6} {'whole d mean/max':>15} {'FP':>3} | "
        f"{'new: all':>7} {'photos':>6} {'region d mean/max':>15} {'FP':>3}"
    )
    for kind, var in variants.items():
        old, new = matches(var, base, args.radius, None), matches(var, base, args.radius, args.crop_radius)
        wd, rd = np.diag(whole_dist(var, base)), np.diag(region_dist(var, base))
        cells = [
            f"{np.diag(m).sum():>5}/{n} {np.diag(m)[photo].sum():>3}/{photo.sum()} {d.mean():9.1f}/{d.max():<5} "
            f"{(m & others).sum():>3}"
            for m, d in ((old, wd), (new, rd))
        ]
        print(f"{kind:<16} | {cells[0]} | {cells[1]} ")
    wd, rd = whole_dist(base, base), region_dist(base, base)
    for label, mask in (("distinct pairs", upper & ~contains), ("tile-in-photo pairs", upper & contains)):
        print(
            f"{label} ({mask.sum()}): whole min {wd[mask].min()}, median {np.median(wd[mask]):.0f}, within "
            f"{args.radius}: {(wd[mask] <= args.radius).sum()} | whole-vs-region min {rd[mask].min()}, "
            f"median {np.median(rd[mask]):.0f}, within {args.crop_radius}: {(rd[mask] <= args.crop_radius).sum()}"
        )
    groups = np.tile(np.arange(n), 1 + len(variants))
    print(
        "find_near_duplicates on all images and variants:",
        pipeline_check([base, *variants.values()], groups, args),
    )


if __name__ == "__main__":
    main()
